"""The one error type users see: printed as a single line, exit code 2, no traceback."""


class BenchError(Exception):
    """Bad input or an unusable environment, explained in one line."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): for one-line errors."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def choices_error(what: str, value, choices) -> BenchError:
    """`unknown task 'rtee' (choices: cola, mnli, ...)`: the shape every choice error takes."""
    return BenchError(f"unknown {what} {value!r} (choices: {', '.join(sorted(map(str, choices)))})")


class StopRun(Exception):
    """Raised by an on_eval callback to stop training early (Optuna pruning); the MLflow run then ends
    KILLED with its `state` tag set to `state` below."""

    state = "stopped"


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the run ends FAILED with the step it happened at."""
