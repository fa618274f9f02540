"""Alerting: rules as code over ``kotaflow.readings``, notifications to staff.

Input: ``kotaflow.readings`` (readings records v2 or v1, :mod:`kotaflow.wire.readings`), read by the
consumer group ``alerting.group_id`` with manual commits. Outputs: alert events on
``kotaflow.alerts`` (:mod:`kotaflow.wire.alerts`), the same events as the InfluxDB
measurement ``alerts`` (Grafana annotations), and notifications to the configured receivers
(webhook, e-mail, Telegram, WhatsApp/SMS gateway; the terminal when none is configured).

Guarantee: at-least-once, without duplicate notifications. After each batch of readings the
alert state (per rule and device), the sliding windows and every outgoing message are written
to one SQLite transaction (:mod:`processors.alerting.state_store`) *before* the Kafka offsets are
committed; a replayed reading is recognised by its timestamp and changes nothing. Messages
leave through a durable outbox, one queue per receiver with retries and backoff, so a receiver
that is down delays only itself and loses nothing.

Layout (pure logic apart from I/O):

* :mod:`.rules` - the YAML rule file, validated with file:line errors; :mod:`.model` - the
  compiled rules; :mod:`.series` - sliding windows; :mod:`.engine` - the state machine;
  :mod:`.silences` - silences and maintenance windows; :mod:`.templates` - messages in
  Bahasa Indonesia and English;
* :mod:`.routing` - routes (who hears of what, when; settings in
  :mod:`kotaflow.alert_routes`), grouping and escalation; :mod:`.acks` - acknowledgements;
  :mod:`.checks` - configuration cross-checks;
* :mod:`.state_store` - SQLite state, outbox, silences and acknowledgements; :mod:`.channels` -
  one module per receiver kind; :mod:`.dispatch` - outbox workers; :mod:`.acklink` - signed
  acknowledge links and their endpoint; :mod:`.metrics` - Prometheus; :mod:`.service` - the
  Kafka consumer; :mod:`.cli` - ``kotaflow alert`` and ``kotaflow alerts ...``.
"""
