"""The wire contracts: what is on each Kafka topic, one module per topic.

=============================  ====================  ======================================
topic (settings key)           module                schema
=============================  ====================  ======================================
``kafka.topics.raw``           :mod:`.raw`           raw envelope v1 (device bytes, headers)
``kafka.topics.readings``      :mod:`.readings`      readings record v2 (v1 still read)
``kafka.topics.deadletter``    :mod:`.deadletter`    dead letter v1, reasons: :mod:`.reasons`
``kafka.topics.alerts``        :mod:`.alerts`        alert event v1
=============================  ====================  ======================================

Every producer and consumer imports its format from here, so the two sides of a topic can
never disagree. Part of the foundation: these modules import nothing of the stages.
"""
