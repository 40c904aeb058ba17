"""The one base of every error that is the user's to fix (a bad file, setting, argument,
model spec, an unreachable server): the CLI reports these in one line, and anything else
as a bug (see ``cli.main``)."""


class UserError(Exception):
    """A problem with the user's input or setup, its message naming what to fix."""
