import pytest
from pydantic import ValidationError

from gptapi.config import Settings
from tests.helpers import REPO

README = REPO / "README.md"


def test_every_setting_is_described_bounded_where_numeric_and_in_the_readme() -> None:
    readme = README.read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"`GPTAPI_{name.upper()}`" in readme, name
        if field.annotation in (int, float):
            bounds = {type(m).__name__ for m in field.metadata}
            assert bounds & {"Ge", "Gt"} and bounds & {"Le", "Lt"}, f"{name} is not bounded"


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTAPI_PORT", "9123")
    monkeypatch.setenv("GPTAPI_N_CTX", "2048")
    settings = Settings()
    assert settings.port == 9123
    assert settings.n_ctx == 2048


def test_out_of_bounds_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(n_ctx=10)
    with pytest.raises(ValidationError):
        Settings(n_threads=0)
