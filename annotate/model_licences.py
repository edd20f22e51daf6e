"""The licence of the models that made an export's images, for its card: from each model folder's `chisel.json`, else
its Hub model card (the YAML block of its README.md), else unknown."""

import json
from pathlib import Path

import yaml
from huggingface_hub import metadata_load

FIELDS = ("license", "license_name", "license_link")  # the Hub's names, in a model card and a dataset card


def model_licence(folder: Path) -> dict[str, str] | None:
    """What the model folder states: {"license": …} with `license_name` / `license_link` where given (an absolute
    link only; a Hub card's relative one points into its own repository), or None when it states nothing."""
    try:
        if (folder / "chisel.json").is_file():
            data = json.loads((folder / "chisel.json").read_text(encoding="utf-8"))
        elif (folder / "README.md").is_file():
            data = metadata_load(folder / "README.md")
        else:
            return None
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("license"), str) or not data["license"].strip():
        return None
    found = {key: str(data[key]).strip() for key in FIELDS if isinstance(data.get(key), str) and data[key].strip()}
    if "://" not in found.get("license_link", "://"):
        del found["license_link"]
    return found


def card_licence(base_models: dict[str, str], *, other_models: bool) -> tuple[dict[str, str], list[str]]:
    """The card's licence fields and a line per model saying what its folder states. `base_models` maps a base
    model's name to its folder; `other_models` is true when some images came from no base model (imported, or
    made elsewhere). One licence when every model states the same one, else `other` with the lines to read."""
    stated = {name: model_licence(Path(folder)) for name, folder in sorted(base_models.items())}
    lines = [
        f"- `{name}`: {_words(licence)}" if licence
        else f"- `{name}`: not stated (no `chisel.json` or model card with a licence in {base_models[name]})"
        for name, licence in stated.items()
    ]
    if other_models:
        lines.append("- images from outside Chisel's base models (imported, or made elsewhere): see their source")
    kinds = {json.dumps(licence, sort_keys=True) for licence in stated.values()}
    if len(kinds) == 1 and None not in stated.values() and not other_models:
        return next(iter(stated.values())), lines
    return {"license": "other"}, lines


def _words(licence: dict[str, str]) -> str:
    name = licence.get("license_name") or licence["license"]
    return f"{name} ({licence['license_link']})" if "license_link" in licence else name
