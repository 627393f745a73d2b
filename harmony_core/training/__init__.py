"""Training: Cross-Task Synergy tasks and per-stream flow-matching losses."""

from .tasks import TASKS, TaskBatch, TaskMix, flow_loss, sample_task_batch

__all__ = ["TASKS", "TaskBatch", "TaskMix", "flow_loss", "sample_task_batch"]
