"""The argument parser every command uses (here, below every layer, so that `imagegen.cascade`'s
command can use it too)."""

from __future__ import annotations

import argparse


class CliParser(argparse.ArgumentParser):
    """argparse with errors a user can always read: a message argparse builds from argv (which may
    hold a lone surrogate, what an invalid byte becomes) is escaped so that printing it cannot
    raise, and an unknown `-word` gets a hint when the command takes free text (a prompt)."""

    def __init__(self, *args, free_text: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.free_text = free_text  # what the positionals are called ("prompt"), if any

    def error(self, message: str):  # noqa: D102 - argparse's hook
        if self.free_text and message.startswith("unrecognized arguments: -"):
            message += f" (a {self.free_text} that starts with '-' goes after `--`)"
        super().error(printable(message))


def one_line(error: BaseException) -> str:
    """The error's message on one printable line (YAML and Pillow messages span several)."""
    return printable(" ".join(str(error).split()) or type(error).__name__)


def printable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates) written as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
