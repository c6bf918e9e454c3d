"""`edge-infer bench`: the plan, the worker process that measures one setting, and the report."""
