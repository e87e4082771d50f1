"""Training: fit the candidate models, track them in MLflow, register and promote the best.

Each concern has its module: ``settings`` (what a run reads), ``candidates`` (the
pipelines), ``evaluation`` (split, scores, the selection rule), ``tracking`` (MLflow
runs and logged models), ``promotion`` (registering and moving the alias), ``report``
(the comparison table and the confusion-matrix picture) and ``workflow`` (all of it in
order). Nothing heavy is imported here, so reading the settings stays fast.
"""
