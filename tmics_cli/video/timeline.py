"""Timestamps that jump, made continuous: `Timeline`.

MPEG-TS and MPEG-PS files may hold several clocks one after another: recordings joined with `cat`, a
broadcast spliced from programmes, a camera that restarted its clock. Their times jump back (or far
ahead) where one part ends and the next begins. As ffmpeg does for these formats, each such jump starts a
part whose times are moved to follow on from the part before; within a part, the streams keep the
offsets they have in the input (audio stays in step with the video).

The video stream sets the offsets: its packets, in decode order, are fed to a `Timeline` by the reader
(which decodes them) and by `streams.StreamCopy` (which reads them again beside the audio), so both find
the same parts and the same offsets. Every other stream counts its own jumps to know which part a packet
belongs to and takes that part's offset from the video's timeline.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

JUMP_SECONDS = 10.0  # a step forward beyond this is a jump too (ffmpeg's dts_delta_threshold)
_TS_DISCONT = 0x200  # AVFMT_TS_DISCONT: formats whose timestamps may jump


def may_jump(container: Any) -> bool:
    """Whether this open input's format allows jumps in its timestamps (MPEG-TS, MPEG-PS)."""
    return bool(container.format.flags & _TS_DISCONT)


class Timeline:
    """The parts of one stream's timestamps (in its time base), fed packet by packet in decode order.
    `sparse` streams (subtitles, data) have long silences: only a step back starts a part there."""

    def __init__(self, time_base: Fraction, sparse: bool = False) -> None:
        self.jump = max(1, round(Fraction(JUMP_SECONDS) / time_base))
        self.sparse = sparse
        self.offsets = [0]  # what to add to each part's raw times, in ticks (the video's set every stream's)
        self.part = 0  # the part of the last packet fed
        self.last: int | None = None  # its raw decode time
        self.step: int | None = None  # the last step forward between packets (a frame's duration)

    def feed(self, packet: Any) -> int:
        """The part of this packet (by its raw decode time; one without stays in the part before)."""
        dts = packet.dts if packet.dts is not None else packet.pts
        if dts is None or not packet.size:
            return self.part
        if self.last is not None:
            back = dts < self.last
            ahead = not self.sparse and dts - self.last > self.jump
            if back or ahead:
                # the new part starts one step after the last packet, on the continuous clock
                self.offsets.append(self.offsets[-1] + self.last + (self.step or 1) - dts)
                self.part += 1
            elif dts > self.last:
                self.step = dts - self.last
        self.last = dts
        return self.part

    @property
    def offset(self) -> int:
        """The offset of the current part, in ticks."""
        return self.offsets[self.part]
