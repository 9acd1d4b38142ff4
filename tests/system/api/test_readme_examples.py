"""The README's Python examples run as written, against the live server on the embedded model
(only its address and key swapped in), so what the README shows a user works."""

from __future__ import annotations

import re

from tests.conftest import API_KEY, LiveServer
from tests.helpers import REPO


def test_the_readme_python_examples_run(live_server: LiveServer) -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 3  # the SDK call, structured output, tools
    namespace: dict[str, object] = {}
    for block in blocks:
        code = block.replace("http://127.0.0.1:8000", live_server.base_url)
        exec(compile(code.replace('"your-key"', repr(API_KEY)), "README.md", "exec"), namespace)
    assert namespace["call"].function.name == "get_weather"  # type: ignore[attr-defined]
