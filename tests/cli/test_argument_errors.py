"""A bad option value is a usage error a user can act on: argparse names the type
callable (``invalid _positive_int value: 'abc'``) unless it raises ArgumentTypeError with
a message, so every converter of every command must."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from mlobs.cli.main import build_parser, main

#: values some converter refuses (each converter must refuse one of them).
BAD_VALUES = ("abc", ",", "", "0", "-1", "1e999", "70000")


def typed_options() -> Iterator[tuple[list[str], argparse.Action]]:
    """(command words, action) for every option or positional with a ``type=``."""
    def walk(parser: argparse.ArgumentParser, words: list[str]):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, [*words, name])
            elif callable(action.type) and action.type not in (str,):
                yield words, action
    yield from walk(build_parser(), [])


OPTIONS = [(words, action) for words, action in typed_options()
           if getattr(action.type, "__module__", "") != "pathlib"]


def test_every_command_with_typed_options_is_seen():
    commands = {" ".join(words) for words, _ in OPTIONS}
    assert {"runs list", "gate", "drift", "cache use", "ui", "gc", "demo"} <= commands


@pytest.mark.parametrize("words, action", OPTIONS,
                         ids=[f"{' '.join(w)} {a.dest}" for w, a in OPTIONS])
def test_a_refused_value_names_the_option_and_what_it_expects(words, action, capsys):
    refused = 0
    for value in BAD_VALUES:
        try:
            action.type(value)
        except argparse.ArgumentTypeError as exc:
            refused += 1
            assert str(exc)  # argparse prints it after "argument --OPTION: "
            continue
        except (TypeError, ValueError) as exc:  # argparse would print the function name
            pytest.fail(f"{action.dest}: {value!r} raised {type(exc).__name__} ({exc}), "
                        "not ArgumentTypeError")
    assert refused, f"{action.dest} accepts every one of {BAD_VALUES}"


def test_the_message_argparse_prints(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["runs", "list", "--limit", "abc"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "mlobs runs list: error: argument --limit: expected a positive integer, got " \
        "'abc'" in err
    for argv, message in [
        (["ui", "--port", "http"], "argument --port: expected a port number from 1 to "
                                   "65535, got 'http'"),
        (["drift", "--min-samples", "1"], "argument --min-samples: expected an integer >= "
                                          "2, got '1'"),
        (["gc", "--keep-previous", "x"], "argument --keep-previous: expected an integer >= "
                                         "0, got 'x'"),
    ]:
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert message in err and "invalid" not in err, err
