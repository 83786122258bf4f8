"""The one base class of every refusal the user can cause; the CLI turns it into one line."""


class MidlevelError(Exception):
    """Bad input, a bad model folder, a missing extra, a wrong kind of model for the call, ..."""


class MissingExtraError(MidlevelError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra
    (``pip install 'midlevel[EXTRA]'``). Also an ``ImportError``, so code that degrades gracefully
    without an optional module keeps doing so."""


class Refusals(MidlevelError, ValueError):
    """Several refusals found by one pass over the input, reported together: one line each, so that one
    run shows every problem. ``errors`` holds them (never nested)."""

    def __init__(self, errors, note: str = "") -> None:
        self.errors = flatten(errors)
        super().__init__(f"{len(self.errors)} problems{note}:\n" + "\n".join(f"  {e}" for e in self.errors))


def flatten(errors) -> list[MidlevelError]:
    """The refusals of ``errors``, each ``Refusals`` replaced by the ones it holds."""
    return [inner for e in errors for inner in (e.errors if isinstance(e, Refusals) else [e])]


def refuse(errors, note: str = "") -> None:
    """Raise what ``errors`` hold: nothing for none, the error itself for one, ``Refusals`` for several."""
    errors = flatten(errors)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise Refusals(errors, note)
