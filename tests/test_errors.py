"""User-facing errors: one clear line, and they survive crossing process boundaries."""

import pickle

from safeset.errors import ConfigError, InputError


def test_input_error_names_file_and_position():
    error = InputError("a.tar", "member 'x' at byte 512", "link member")
    assert str(error) == "a.tar: member 'x' at byte 512: link member"
    assert error.exit_code == 2


def test_errors_survive_pickling_across_processes():
    error = pickle.loads(pickle.dumps(InputError("a.tar", None, "truncated")))
    assert isinstance(error, InputError) and str(error) == "a.tar: truncated" and error.position is None
    assert str(pickle.loads(pickle.dumps(ConfigError("bad option")))) == "bad option"
