"""Pipeline health: how fast readings flow, what is dead-lettered and why, lag, write latency.

Reads the ``kotaflow_pipeline`` measurement that every processor writes
(``processors/runtime/health.py``): cumulative counters become per-second rates, summed over the
running instances of each stage.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.units import Milliseconds, Short

from deploy.grafana import flux, panels
from deploy.grafana.context import BuildContext
from deploy.grafana.i18n import Text

NAME = "pipeline"
TITLE = Text("Kesehatan pipeline", "Pipeline health")
DESCRIPTION = Text(
    "Laju data masuk dan keluar tiap tahap, dead-letter menurut alasan, lag konsumen Kafka "
    "dan latensi tulis.",
    "Records in and out per stage, dead letters by reason, Kafka consumer lag and write latency.",
)
PER_SECOND = "suffix: /s"
STAGE_NAME = "${__field.labels.stage}"
REASON_NAME = "${__field.labels.reason}"


def build(ctx: BuildContext) -> list[dm.Dashboard]:
    bucket, measurement = ctx.influx.health_bucket, ctx.influx.health_measurement

    def rate(title: Text, field: str, *, reason: bool = False, width: int = 12) -> timeseries.Panel:
        by = "reason" if reason else "stage"
        return panels.time_series(
            ctx,
            title,
            flux.health_rate(bucket, measurement, field, by=by, reason=reason),
            unit=PER_SECOND,
            series_name=REASON_NAME if reason else STAGE_NAME,
            width=width,
        )

    def gauge(title: Text, field: str, fn: str, combine: str, unit: str) -> timeseries.Panel:
        return panels.time_series(
            ctx,
            title,
            flux.health_gauge(bucket, measurement, field, fn=fn, combine=combine),
            unit=unit,
            series_name=STAGE_NAME,
        )

    board = (
        panels.dashboard(ctx, NAME, TITLE, DESCRIPTION)
        .with_panel(rate(Text("Data masuk per tahap", "Ingest rate per stage"), "records_in"))
        .with_panel(rate(Text("Data keluar per tahap", "Output rate per stage"), "records_out"))
        .with_panel(
            rate(
                Text("Dead-letter menurut alasan", "Dead letters by reason"),
                "deadletter",
                reason=True,
            )
        )
        .with_panel(rate(Text("Dead-letter per tahap", "Dead letters per stage"), "deadletter"))
        .with_panel(
            gauge(
                Text("Lag konsumen Kafka", "Kafka consumer lag"),
                "consumer_lag",
                "max",
                "sum",
                Short,
            )
        )
        .with_panel(
            gauge(
                Text("Latensi tulis (median)", "Write latency (median)"),
                "write_ms_p50",
                "mean",
                "max",
                Milliseconds,
            )
        )
        .with_panel(
            gauge(
                Text("Latensi tulis (maksimum)", "Write latency (maximum)"),
                "write_ms_max",
                "max",
                "max",
                Milliseconds,
            )
        )
        .with_panel(rate(Text("Percobaan ulang penulisan", "Write retries"), "write_retries"))
    )
    return [panels.finish(board)]
