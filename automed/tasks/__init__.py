"""Tasks: what differs between segmentation, classification and regression, behind one protocol
(:class:`automed.tasks.base.Task`), chosen from the plan's task type (:func:`automed.tasks.registry.task_for`)."""
