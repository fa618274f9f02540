"""Stage ``aggregate``: the stage (:mod:`.stage`), its 1-minute event-time windows
(:mod:`.windows`) and the hourly/daily rollups it recomputes (:mod:`.rollups`), together."""
