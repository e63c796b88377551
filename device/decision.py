"""Deciding who a track is: k of the last n embedded frames agree, with a margin.

Per frame, the gallery search gives the best person and the best *other* person. A
frame votes for its best person when the score reaches the threshold and beats the
second-best person by ``min_margin``. When one person has ``k`` votes among the
track's last ``n`` embedded frames, the track is decided: one event, carrying the best
frame's score and margin and the best-quality crop seen on the track.

After a decision the track stops asking for embeddings until that person's cooldown
has passed; then it must win k of n again (a person standing in view gives one event
per cooldown window, not one per frame). An undecided track is embedded every
``embed_every`` frames, slowing to ``slow_embed_every`` once it has had 3n tries (a
stranger in view costs little, and a person who turns to the camera later is still
recognised).

Privacy: observations and crops live in the track's memory only and vanish with it;
nothing about a track that never matched leaves this module.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from lookout.device.cooldown import Cooldown
from lookout.device.tracker import Track
from lookout.face.types import Quality


@dataclass(frozen=True)
class Observation:
    frame_index: int
    person_id: str | None  # best person, None when the gallery is empty
    score: float  # best person's score
    second: float  # best other person's score (-1 when there is none)
    name: str | None = None
    photo_id: str | None = None  # the enrolled photo the best person's score came from

    @property
    def margin(self) -> float:
        return self.score - self.second


@dataclass(frozen=True)
class Decision:
    track_id: int
    person_id: str
    name: str | None
    score: float
    margin: float
    votes: int
    track_length: int
    box: tuple[int, int, int, int]
    crop: np.ndarray | None  # BGR, best-quality crop of the track
    photo_ids: tuple[str, ...] = ()  # the enrolled photos the votes rest on (a withdrawn one voids the event)


@dataclass
class _State:
    recent: deque
    decided: str | None = None  # person the track was decided as (until their cooldown passes)
    best_quality: float = -1.0
    crop: np.ndarray | None = None
    box: np.ndarray | None = None
    suppressed: int = 0
    extra: dict = field(default_factory=dict)


def quality_value(q: Quality) -> float:
    """One number to pick the best crop: big, sharp, frontal."""
    return q.size_px * min(1.0, q.blur / 100.0) * max(0.0, 1.0 - abs(q.yaw))


class Decider:
    def __init__(
        self,
        *,
        k: int = 3,
        n: int = 5,
        min_margin: float = 0.05,
        cooldown: Cooldown | None = None,
        embed_every: int = 1,
        slow_embed_every: int = 5,
    ) -> None:
        self.k, self.n = k, n
        self.min_margin = min_margin
        self.cooldown = cooldown or Cooldown(60)
        self.embed_every = embed_every
        self.slow_embed_every = slow_embed_every

    def _state(self, track: Track) -> _State:
        state = track.meta.get("decision")
        if state is None:
            state = track.meta["decision"] = _State(deque(maxlen=self.n))
        return state

    def wants_embedding(self, track: Track, frame_index: int, now: float) -> bool:
        """Should this track's face be embedded in this frame?"""
        state = self._state(track)
        if state.decided is not None:
            if not self.cooldown.ready(state.decided, now):
                return False
            state.decided = None  # cooldown over: the person must be recognised afresh
            state.recent.clear()
        every = self.embed_every if track.embeds < 3 * self.n else self.slow_embed_every
        return frame_index - track.last_embed_frame >= every

    def offer_crop(self, track: Track, quality: Quality, crop_fn) -> None:
        """Keep the crop if this frame's face is the best seen on the track (``crop_fn()`` makes it)."""
        state = self._state(track)
        value = quality_value(quality)
        if value > state.best_quality:
            state.best_quality = value
            state.crop = crop_fn()
            state.box = track.box.copy()

    def observe(self, track: Track, obs: Observation, threshold: float, now: float) -> Decision | None:
        """Add one embedded frame's search result; a Decision when the track is decided now."""
        state = self._state(track)
        if state.decided is not None:
            return None
        state.recent.append(obs)
        votes = Counter(
            o.person_id
            for o in state.recent
            if o.person_id is not None and o.score >= threshold and o.margin >= self.min_margin
        )
        if not votes:
            return None
        person, count = votes.most_common(1)[0]
        if count < self.k:
            return None
        voters = [
            o for o in state.recent if o.person_id == person and o.score >= threshold and o.margin >= self.min_margin
        ]
        best = max(voters, key=lambda o: o.score)
        state.decided = person
        if not self.cooldown.ready(person, now):
            state.suppressed += 1
            return None
        self.cooldown.mark(person, now)
        box = state.box if state.box is not None else track.box
        return Decision(
            track_id=track.id,
            person_id=person,
            name=best.name,
            score=float(best.score),
            margin=float(min(2.0, max(0.0, best.margin))),
            votes=count,
            track_length=track.length,
            box=_pixel_box(box),
            crop=state.crop,
            photo_ids=tuple(sorted({o.photo_id for o in voters if o.photo_id is not None})),
        )


def _pixel_box(box: np.ndarray) -> tuple[int, int, int, int]:
    """[x1, y1, x2, y2] as whole, non-negative pixels."""
    x1, y1, x2, y2 = (int(max(0, round(float(v)))) for v in box[:4])
    return x1, y1, x2, y2
