"""An exception whose message cannot be read: its ``__str__`` raises (seen with exceptions
rebuilt by pickling without their constructor's arguments)."""


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message")
