"""What a real-recording corpus build writes besides the clips: attribution, dropped files, summary.

* ``ATTRIBUTION.tsv``: one row per source recording the corpus uses (file, package, author,
  licence, class, split, clips made from it);
* ``ATTRIBUTION.md``: the same grouped by package and licence, with the licences' addresses, to
  ship beside weights trained on the corpus;
* ``dropped.tsv``: every file left out (file, licence, reason);
* ``real.json``: counts per class, licence, split and origin, hours of audio, drops by reason.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from mka_core.atomic import atomic_write

LICENCE_URLS = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-3.0": "https://creativecommons.org/licenses/by/3.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-3.0": "https://creativecommons.org/licenses/by-sa/3.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "MIT": "https://opensource.org/license/mit/",
}


#: The MIT licence's notice, which must accompany copies of MIT-licensed material.
MIT_NOTICE = """Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial
portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT
LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO
EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR
THE USE OR OTHER DEALINGS IN THE SOFTWARE."""


def _cell(text: str) -> str:
    return " ".join(str(text).split())


def write_attribution(folder, recordings, uses) -> None:
    used = [r for r in recordings if sum(uses.get(r.key, {}).values()) > 0]
    with atomic_write(folder / "ATTRIBUTION.tsv", "w") as handle:
        handle.write("file\tpackage\tauthor\tlicence\tclass\tsplit\tclips\n")
        for r in sorted(used, key=lambda r: r.key):
            handle.write(f"{_cell(r.key)}\t{_cell(r.package)}\t{_cell(r.author)}\t{r.licence}\t{r.label}\t{r.split}\t"
                         f"{sum(uses[r.key].values())}\n")
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for r in used:
        groups[(r.package, r.licence)].append(r)
    lines = ["# Attribution", "",
             "The corpus (and any model trained on it) contains adaptations of the recordings below, used under the "
             "licences named. Every file is listed in ATTRIBUTION.tsv with its author.", ""]
    for (package, licence), members in sorted(groups.items()):
        url = LICENCE_URLS.get(licence, "")
        lines.append(f"## {package}: {licence}" + (f" ({url})" if url else ""))
        lines.append("")
        authors = Counter(_cell(r.author) or "unstated" for r in members)
        lines.append(f"{len(members)} recordings. Copyright holders:")
        lines.extend(f"- {author} ({count} files)" for author, count in sorted(authors.items()))
        lines.append("")
    if any(licence == "MIT" for _, licence in groups):
        lines += ["## The MIT licence notice", "", "For the MIT-licensed recordings above:", "", MIT_NOTICE, ""]
    with atomic_write(folder / "ATTRIBUTION.md", "w") as handle:
        handle.write("\n".join(lines) + "\n")


def write_dropped_files(folder, dropped) -> None:
    with atomic_write(folder / "dropped.tsv", "w") as handle:
        handle.write("file\tlicence\treason\n")
        for item in dropped:
            handle.write(f"{_cell(item.path)}\t{_cell(item.licence)}\t{_cell(item.reason)}\n")


def write_summary(folder, rows, recordings, dropped, settings, label_map) -> dict:
    def hours(selected) -> float:
        return round(sum(r.duration or 0 for r in selected) / 3600, 3)

    everything = [row for split_rows in rows.values() for row in split_rows]
    per_class: dict[str, dict] = {}
    for name in sorted(label_map.classes):
        mine = [r for r in recordings if r.label == name]
        lead = [row for row in everything if row.extra["labels"].split(";")[0] == name]
        per_class[name] = {
            "recordings": len(mine),
            "recording_minutes": round(sum(r.wave.size for r in mine) / 16000 / 60, 2),
            "clips": {split: sum(1 for row in rows[split] if row.extra["labels"].split(";")[0] == name) for split in rows},
            "origins": dict(Counter(row.extra["origin"] for row in lead)),
        }
    per_licence = Counter(r.licence for r in recordings)
    summary = {
        "clips": {split: len(split_rows) for split, split_rows in rows.items()},
        "hours": {split: hours(split_rows) for split, split_rows in rows.items()},
        "hours_total": hours(everything),
        "origins": dict(Counter(row.extra["origin"] for row in everything)),
        "origins_hours": {origin: hours([row for row in everything if row.extra["origin"] == origin])
                          for origin in sorted({row.extra["origin"] for row in everything})},
        "recordings": {"kept": len(recordings), "by_split": dict(Counter(r.split for r in recordings)),
                       "by_licence": dict(per_licence), "by_package": dict(Counter(r.package for r in recordings)),
                       "minutes": round(sum(r.wave.size for r in recordings) / 16000 / 60, 2)},
        "classes_with_real_audio": sorted({r.label for r in recordings}),
        "per_class": per_class,
        "dropped": len(dropped),
        "dropped_by_reason": dict(Counter(item.reason.split(" (")[0] for item in dropped).most_common()),
        "settings": {k: getattr(settings, k) for k in ("seed", "heldout", "valid", "max_windows", "reuse",
                                                       "composition_fraction", "background_fraction", "min_clips",
                                                       "augment_ratio",
                                                       "synthetic_clips", "min_seconds", "silence_dbfs",
                                                       "oneshot_seconds", "max_read_seconds")},
        "allowed_licences": list(settings.allowed),
        "label_map": label_map.path,
    }
    with atomic_write(folder / "real.json", "w") as handle:
        handle.write(json.dumps(summary, indent=2) + "\n")
    return summary
