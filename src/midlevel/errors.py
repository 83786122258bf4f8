"""The one base class of every refusal the user can cause; the CLI turns it into one line."""


class MidlevelError(Exception):
    """Bad input, a bad model folder, a missing extra, a wrong kind of model for the call, ..."""
