"""The failure-to-enrol report: one row per photo with a reason code, and a summary line.

Statuses: ``enrolled``; ``failed`` (unreadable, download_failed, no_face,
several_faces, no_face_in_box, too_small, too_blurred, pose, duplicate;
bad_identifier: an id no match event can carry; conflicting_record: the same
person_id with another name, jurisdiction or department; bad_photo_url: an API
named something other than an http(s) photo); ``excluded`` (policy_excluded: the
record's jurisdiction or department is denied, or it has none at all, which is
denied unless a policy file allows it; not_for_recognition: the record says
use_for_recognition false). Excluded photos were never read, let alone
embedded. Updates add ``removed``: a photo of the previous version taken out
(withdrawn, left_source, policy_excluded, removed_by_operator).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from lookout.errors import InputError

FIELDS = ("photo_id", "person_id", "status", "reason", "detail", "source", "near_duplicate_of")
NO_JURISDICTION = "no jurisdiction"  # how the detail of a policy_excluded record with no jurisdiction begins


def _no_jurisdiction(r) -> bool:
    return r.status == "excluded" and r.reason == "policy_excluded" and (r.detail or "").startswith(NO_JURISDICTION)


def summarise(results) -> dict:
    removed = [r for r in results if r.status == "removed"]  # photos an update took out of the bundle
    results = [r for r in results if r.status != "removed"]
    people: dict[str, bool] = {}
    excluded_people: set[str] = set()
    for r in results:
        people[r.person_id] = people.get(r.person_id, False) or r.status == "enrolled"
        if r.status == "excluded":
            excluded_people.add(r.person_id)
    statuses = Counter(r.status for r in results)
    reasons = Counter(r.reason for r in results if r.reason)
    considered = statuses["enrolled"] + statuses["failed"]  # photos we were allowed to try
    people_considered = [p for p in people if p not in excluded_people or people[p]]
    return {
        "photos": len(results),
        "photos_enrolled": statuses["enrolled"],
        "photos_failed": statuses["failed"],
        "photos_excluded": statuses["excluded"],
        "photo_enrol_rate": round(statuses["enrolled"] / considered, 4) if considered else 0.0,
        "people": len(people),
        "people_enrolled": sum(people.values()),
        "people_excluded": len(excluded_people - {p for p, ok in people.items() if ok}),
        "people_enrol_rate": round(sum(people.values()) / len(people_considered), 4) if people_considered else 0.0,
        "reasons": dict(sorted(reasons.items())),
        "photos_no_jurisdiction": sum(1 for r in results if _no_jurisdiction(r)),
        "near_duplicates": sum(1 for r in results if r.near_duplicate_of),
        "photos_removed": len(removed),
        "removed_reasons": dict(sorted(Counter(r.reason for r in removed).items())),
    }


def count(n: int, one: str, many: str | None = None) -> str:
    """``1 person``, ``2 people``, ``0 photos``: a number with its noun in the right number."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def summary_headline(summary: dict) -> str | None:
    """One line for the top of a build's output when nothing was enrolled because records have no jurisdiction:
    the operator must not have to read the report to find out why the gallery is empty."""
    missing = summary.get("photos_no_jurisdiction", 0)
    if not missing or summary["photos_enrolled"]:
        return None
    every = "every photo's record has" if missing == summary["photos"] else f"{missing} of {summary['photos']} have"
    return (
        f"NOTHING ENROLLED: {every} no jurisdiction and no default was declared for the source, and an unknown "
        f"jurisdiction is denied (it could be Illinois). Declare where the source's people are with "
        f"--jurisdiction CODE (e.g. --jurisdiction US-CA) or give each record a jurisdiction"
    )


def summary_line(summary: dict, headline: bool = True) -> str:
    """The summary in one line; it starts with ``summary_headline`` when there is one (``headline=False``: without)."""
    reasons = ", ".join(f"{k} {v}" for k, v in summary["reasons"].items()) or "none"
    tried = summary["photos_enrolled"] + summary["photos_failed"]
    people = summary["people"] - summary["people_excluded"]
    if tried:
        enrolled = (
            f"enrolled {summary['photos_enrolled']} of {count(tried, 'photo')} ({summary['photo_enrol_rate']:.1%}) "
            f"and {summary['people_enrolled']} of {count(people, 'person', 'people')} "
            f"({summary['people_enrol_rate']:.1%})"
        )
    else:
        enrolled = "no photo to enrol" + (" (nothing new or changed)" if not summary["photos"] else "")
    excluded = (
        f"{count(summary['photos_excluded'], 'photo')} of {count(summary['people_excluded'], 'person', 'people')} "
        "excluded by policy or record"
    )
    line = f"{enrolled}; {excluded}; reasons: {reasons}"
    top = summary_headline(summary)
    if top and headline:
        line = f"{top}. {line}"
    elif not top and summary.get("photos_no_jurisdiction"):
        line += (
            f"; {count(summary['photos_no_jurisdiction'], 'photo')} excluded for having no jurisdiction "
            "(declare the source's with --jurisdiction CODE)"
        )
    if summary.get("photos_removed"):
        why = ", ".join(f"{k} {v}" for k, v in summary["removed_reasons"].items())
        line += f"; {count(summary['photos_removed'], 'photo')} removed from the gallery ({why})"
    return line


def write_report(results, path: Path, summary: dict | None = None) -> None:
    """CSV (one row per photo) or JSON ({"summary":..., "photos": [...]}) by the file's suffix."""
    path = Path(path)
    summary = summary or summarise(results)
    rows = [{k: ("" if getattr(r, k) is None else getattr(r, k)) for k in FIELDS} for r in results]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(
                json.dumps({"summary": summary, "summary_line": summary_line(summary), "photos": rows}, indent=1)
            )
            return
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as err:  # a full disk, /dev/full, a folder in the way: say which file
        raise InputError(str(path), f"cannot write the failure-to-enrol report: {err.strerror or err}") from None
