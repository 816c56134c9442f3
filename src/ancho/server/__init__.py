"""``ancho serve``: the REST API, the dispatcher that executes queued runs, users and tokens."""
