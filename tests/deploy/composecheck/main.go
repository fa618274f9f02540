// composecheck loads Compose files with compose-go, the loader behind `docker compose
// config`: schema validation, interpolation from the environment, normalisation, and the
// later files merged over the first as `docker compose -f a -f b` does. It prints the
// resolved model as YAML, or the loader's error and exits 1.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck COMPOSE_FILE [OVERRIDE_FILE...]")
		os.Exit(2)
	}
	files := make([]string, 0, len(os.Args)-1)
	for _, arg := range os.Args[1:] {
		file, err := filepath.Abs(arg)
		if err != nil {
			fail(err)
		}
		files = append(files, file)
	}
	options, err := cli.NewProjectOptions(
		files,
		cli.WithOsEnv,
		cli.WithWorkingDirectory(filepath.Dir(files[0])),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
