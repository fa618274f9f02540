"""Stream processors: validate, normalise, aggregate and store readings; evaluate alerts."""
