"""The one base class of every refusal the user can cause; the CLI turns it into one line."""


class MidlevelError(Exception):
    """Bad input, a bad model folder, a missing extra, a wrong kind of model for the call, ..."""


class MissingExtraError(MidlevelError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra
    (``pip install 'midlevel[EXTRA]'``). Also an ``ImportError``, so code that degrades gracefully
    without an optional module keeps doing so."""
