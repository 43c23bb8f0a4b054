"README's API section equals what tools/api_docs.py generates from the modules' __all__ and docstrings."
import importlib.util, pathlib
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('api_docs', ROOT / 'tools' / 'api_docs.py')
api_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api_docs)


def current(text):
    return api_docs.replace_section(text, api_docs.api_section()) == text


def test_readme_api_section_is_current():
    assert current(api_docs.README.read_text(encoding='utf-8')), "README's API section is stale: run `python tools/api_docs.py`"


def test_stale_section_is_detected(monkeypatch):
    "A changed docstring, or a hand edit of the section, makes the check fail."
    import lora_lite.adapter as adapter
    text = api_docs.README.read_text(encoding='utf-8')
    monkeypatch.setattr(adapter.attach, '__doc__', 'A docstring the README does not have.')
    assert not current(text)
    monkeypatch.undo()
    assert not current(text.replace('`ll.detach(model)`', '`ll.detach(model, strict)`'))


def test_every_public_function_listed():
    "Each core module's __all__ callable appears once, with its docstring's first line; no docstring is shown as missing."
    import lora_lite
    section = api_docs.api_section()
    for m in api_docs.MODULES:
        mod = importlib.import_module(f'lora_lite.{m}')
        for n in mod.__all__:
            obj = getattr(mod, n)
            if callable(obj) and not hasattr(lora_lite, n): assert f"`{n}(" in section or f"`{n}`" in section, (m, n)


def test_replace_section_needs_markers():
    with pytest.raises(SystemExit): api_docs.replace_section('# no markers here', 'x')
