"""The one error type the trainer reports as a clean `error: <message>` line (exit 1)."""


class TrainerError(Exception):
    """A failure the user can act on (bad data, bad base model, missing mount…).

    Raised anywhere; `cli.run` prints `error: <message>` on stderr and exits 1, with no
    traceback unless --verbose / AVATAR_DEBUG=1.
    """


class Interrupted(Exception):
    """The job was asked to stop (SIGTERM on Spot preemption, SIGINT); state was checkpointed."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
