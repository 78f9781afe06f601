"""The docs say what the code does: every declared setting, with its default, in README.md's
configuration table and in discord-config.env.example, and nothing undeclared; every declared flag on
`orchestrate --help`, naming its key. The declarations (settings_spec.SETTINGS) are the one source.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from discord_orch.config import DEFAULTS, KNOWN_KEYS, Settings
from discord_orch.settings_spec import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
NOTHING = "-"                      # the README's default column for a key that is simply unset
KEY = re.compile(r"`([A-Z][A-Z0-9_]*)`")
EXAMPLE_LINE = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")
OPTION_INDENT = "  "               # click starts each option's entry here; wrapped help is indented more
HELP_TIMEOUT_S = 60


def readme_defaults() -> Dict[str, List[str]]:
    """Key -> the default cells of the rows of README's '## Configuration' table that name it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    found: Dict[str, List[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2 or not KEY.search(cells[0]):
            continue
        for key in KEY.findall(cells[0]):
            found.setdefault(key, []).append(cells[1].replace("`", ""))
    return found


def example_values() -> Dict[str, List[str]]:
    """Key -> the values of its KEY=value or #KEY=value lines in discord-config.env.example."""
    found: Dict[str, List[str]] = {}
    for line in (ROOT / "discord-config.env.example").read_text(encoding="utf-8").splitlines():
        match = EXAMPLE_LINE.match(line.strip())
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.key for s in SETTINGS])
def test_readme_table_gives_the_declared_default(setting):
    cells = readme_defaults().get(setting.key)
    assert cells is not None, f"README.md's configuration table has no row for {setting.key}"
    assert cells == [setting.default or setting.unset_means or NOTHING], setting.key


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.key for s in SETTINGS])
def test_example_file_gives_the_declared_default(setting):
    values = example_values().get(setting.key)
    assert values is not None and len(values) == 1, f"discord-config.env.example: one {setting.key}= line, got {values}"
    if setting.default or setting.unset_means:
        # Uncommenting the line changes nothing: it shows the default (or nothing, where unset means more).
        assert values == [setting.default], setting.key
    # else: an unset key does nothing, and its line may show an example value


def test_the_docs_name_no_undeclared_key():
    assert set(readme_defaults()) <= set(KNOWN_KEYS), set(readme_defaults()) - set(KNOWN_KEYS)
    assert set(example_values()) <= set(KNOWN_KEYS), set(example_values()) - set(KNOWN_KEYS)


def test_known_keys_defaults_and_settings_come_from_the_declarations():
    assert list(KNOWN_KEYS) == [s.key for s in SETTINGS]
    assert DEFAULTS == {s.key: s.default for s in SETTINGS if s.default}
    for setting in SETTINGS:
        assert setting.field in Settings._fields, setting.key
        if setting.parse is not None:
            assert Settings._field_defaults[setting.field] == setting.parse(setting.key, setting.default, ROOT), \
                setting.key


def orchestrate_help() -> Dict[str, str]:
    """Option -> its help, as `discord-orch orchestrate --help` prints it (click's wrapping undone)."""
    result = subprocess.run([sys.executable, "-m", "discord_orch", "orchestrate", "--help"],
                            capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    entries: List[str] = []
    for line in result.stdout.split("\nOptions:\n", 1)[1].splitlines():
        if line.startswith(OPTION_INDENT + "-"):
            entries.append(line)
        elif entries:
            entries[-1] += " " + line
    return {entry.split()[0].rstrip(","): " ".join(entry.split()[1:]) for entry in entries}


def test_every_declared_flag_is_on_orchestrate_help_naming_its_key():
    options = orchestrate_help()
    flagged = [s for s in SETTINGS if s.flag]
    assert flagged
    for setting in flagged:
        assert setting.flag in options, f"{setting.flag} is not on orchestrate --help: {sorted(options)}"
        default = f", default {setting.default}" if setting.default else ""
        assert f"({setting.key}{default})." in options[setting.flag], (setting.flag, options[setting.flag])
