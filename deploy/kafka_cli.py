"""``kotaflow kafka topics create``: kotaflow's topics as ``settings.kafka.layout`` says.

The installer's one way to make the topics: the local stack's ``stack up``, the compose
deployment's ``kafka-topics`` job and the VM guide all run this code
(:func:`deploy.local.kafka_topics.create_kotaflow_topics`). It connects as every kotaflow
client does (``kotaflow.kafka.client_options``: SASL_SSL in production), creates what is
missing and reports, never changes, an existing topic that differs from the layout.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from deploy.local.kafka_topics import TopicsOutcome, create_kotaflow_topics
from deploy.local.service import ServiceError
from ingest.sizes import SizeLimits
from kotaflow.context import settings_of
from kotaflow.kafka import KafkaAccessError, client_options

app = typer.Typer(
    help="Kafka administration for kotaflow.\n\nExample: kotaflow kafka topics create",
    no_args_is_help=True,
)
topics = typer.Typer(
    help="kotaflow's topics.\n\nExample: kotaflow kafka topics create --strict",
    no_args_is_help=True,
)
app.add_typer(topics, name="topics")
console = Console(stderr=True, highlight=False)
DRIFT_EXIT = 3


@topics.command()
def create(
    ctx: typer.Context,
    strict: Annotated[
        bool, typer.Option("--strict", help=f"Exit {DRIFT_EXIT} when a topic drifted.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable outcome.")] = False,
) -> None:
    """Create the missing topics with the partitions, replication factor,
    min.insync.replicas, retention and max message size of settings.kafka.layout.

    Idempotent: a topic that differs (partitions, replication, config) is reported, not changed.

    Example: KOTAFLOW_KAFKA__LAYOUT__RETENTION_HOURS=336 kotaflow kafka topics create
    """
    settings = settings_of(ctx)
    try:
        outcome = create_kotaflow_topics(
            settings.kafka,
            console.print,
            client_options(settings),
            SizeLimits.of(settings.bridge),
        )
    except (ServiceError, KafkaAccessError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(_as_json(outcome), indent=2))
    else:
        console.print(_summary(outcome))
    if strict and outcome.drift:
        raise typer.Exit(DRIFT_EXIT)


def _summary(outcome: TopicsOutcome) -> str:
    parts = [f"{len(outcome.created)} created", f"{len(outcome.unchanged)} as the layout says"]
    if outcome.drift:
        drifted = sorted({d.topic for d in outcome.drift})
        parts.append(f"[yellow]{len(drifted)} drifted[/yellow] ({', '.join(drifted)})")
    return f"kafka topics: {', '.join(parts)}; replication {outcome.replication_factor}"


def _as_json(outcome: TopicsOutcome) -> dict[str, object]:
    return {
        "replication_factor": outcome.replication_factor,
        "configs": outcome.configs,
        "created": outcome.created,
        "unchanged": outcome.unchanged,
        "drift": [
            {"topic": d.topic, "what": d.what, "found": d.found, "wanted": d.wanted}
            for d in outcome.drift
        ],
    }
