"""AtomicPusher: TFX's Pusher (same spec, inputs and outputs) whose push is staged, then renamed into
the serving directory, so that a crash mid-copy never leaves a partial model being served."""
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from graceful.components.atomic_pusher.executor import Executor


class AtomicPusher(Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
