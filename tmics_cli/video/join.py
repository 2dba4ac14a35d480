"""Joining derained segments into the output: pieces of video stream-copied end to end (no re-encoding),
the input's other streams muxed once over the whole, or a folder's PNG frames moved into one folder.

Each piece is one closed run of the encoder (it starts on a keyframe) in the output's own container, its
frames carrying the input's timestamps, so joining is a copy of packets: timestamps stay the input's, no
frame is repeated or missing, and audio, subtitles, chapters and tags are never cut per segment.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..outputs import PendingOutput
from .reader import SourceInfo, VideoError, _reason, open_media
from .writer import EncodeOptions, VideoSink, late_ticks, set_pixel_aspect, write_error


class _JoinSink(VideoSink):
    """A VideoSink whose video stream is copied from encoded pieces instead of encoded here."""

    def __init__(
        self,
        dst: Path,
        info: SourceInfo,
        options: EncodeOptions,
        first_piece: Path,
        overwrite: bool,
        late: int = 0,
    ) -> None:
        self.first_piece = first_piece
        self._last_dts: Fraction | None = None  # the last packet's decode time, in seconds
        # AVI's times are frame numbers (see _renumber); the last one given
        self.numbered = dst.suffix.lower() == ".avi"
        self._last_number: int | None = None
        super().__init__(dst, info, options, 0, 0, overwrite)
        # the pieces' times were written `late` seconds late (MPEG-TS: writer.piece_late), in the ticks of
        # their sink's time base (this sink's too: a frame clock's for MPEG-2, else the input's): taken back
        self.late = late_ticks(late, self.time_base) * self.time_base

    def _video_stream(self, width: int, height: int) -> Any:
        with open_media(self.first_piece) as piece:
            template = piece.streams.video[0]
            # by the decoder's codec (libdav1d for AV1): an encoder of the decoder's name is not looked up
            stream = self.container.add_stream_from_template(template, opaque=True)
            stream.time_base = template.time_base
            # the template's frame rate reads back as its time base's (1/12800 in MOV): a timecode track
            # built from it is refused when the file is closed. The pieces play at the input's rate.
            rate = template.average_rate or self.info.fps
            if rate:
                stream.codec_context.framerate = Fraction(rate)
        if self.info.rotation:
            stream.set_display_rotation(self.info.rotation)
        set_pixel_aspect(stream, self.info.pixel_aspect)
        return stream

    def add(self, piece: Path) -> int:
        """Copy the video packets of one piece; returns how many frames it held."""
        import av

        frames = 0
        try:
            with open_media(piece) as source:
                stream = source.streams.video[0]
                if (stream.codec_context.extradata or b"") != (self.stream.codec_context.extradata or b""):
                    raise VideoError(f"{piece.name} was encoded with other settings than the first part")
                held: list[Any] = []  # packets without a decode time, after a piece before (see _fill_dts)
                late = round(self.late / stream.time_base)
                for packet in source.demux(stream):
                    if not packet.size:
                        continue
                    if late:
                        packet.pts = None if packet.pts is None else packet.pts - late
                        packet.dts = None if packet.dts is None else packet.dts - late
                    if self.numbered:
                        self._renumber(packet)
                    if packet.dts is None and self._last_dts is not None and packet.pts is not None:
                        held.append(packet)
                        continue
                    for waiting in self._fill_dts(held, stream.time_base, packet.dts):
                        frames += self._copy(waiting, stream.time_base)
                    held = []
                    frames += self._copy(packet, stream.time_base)
                for waiting in self._fill_dts(held, stream.time_base, None):
                    frames += self._copy(waiting, stream.time_base)
        except av.error.FFmpegError as exc:
            raise write_error(self.dst, exc, self.count + frames) from None
        self.count += frames
        return frames

    def _renumber(self, packet: Any) -> None:
        """AVI: a packet's decode time is its frame number (the pieces hold no B-frames), at least one after
        the last: a piece's first packet reads back as number 0 (a piece of one frame has nothing else),
        and a variable-rate input's piece may start on the number its predecessor ended on."""
        number = packet.dts if packet.dts is not None else packet.pts
        if self._last_number is not None and (number is None or number <= self._last_number):
            number = self._last_number + 1
        packet.pts = packet.dts = number
        self._last_number = number

    def _fill_dts(self, held: list[Any], time_base: Fraction, next_dts: int | None) -> list[Any]:
        """Decode times for `held`, packets read without one. Containers that store no decode times
        (Matroska, WebM) give none to a piece's first packets while the demuxer fills its reordering
        delay; at the start of the output the muxer derives them, but after a piece its derivation runs
        back in time and the mux fails. They get times spread evenly after the last packet's and before
        both the next known one and their own presentation times (the encoder's own, for frames of a
        constant rate); without room for that (an odd time base) they go as they are."""
        if not held or self._last_dts is None:
            return held
        last = round(self._last_dts / time_base)
        top = min(p.pts for p in held)
        if next_dts is not None:
            top = min(top, next_dts)
        n = len(held)
        if top - last > n:
            for j, packet in enumerate(held):
                packet.dts = last + (top - last) * (j + 1) // (n + 1)
        return held

    def _copy(self, packet: Any, time_base: Fraction) -> int:
        """Mux one packet of a piece into the output, its decode time never behind the last one's."""
        seconds = float(packet.pts * time_base) if packet.pts is not None else None
        if self._last_dts is not None and packet.dts is not None:
            last = round(self._last_dts / time_base)
            if packet.dts <= last and (packet.pts is None or last < packet.pts):
                packet.dts = last + 1  # never a decode time back (joins of VFR pieces)
        if packet.dts is not None:
            self._last_dts = packet.dts * time_base
        packet.stream = self.stream  # mux rescales from the piece's time base
        self.container.mux(packet)
        if self.others is not None and seconds is not None:
            self.others.copy_until(seconds + 0.5)  # pieces hold the output's clock
        return 1

    def _flush_video(self) -> None:
        pass  # copied packets: no encoder to flush


def join_video(
    pieces: Sequence[Path],
    dst: Path,
    info: SourceInfo,
    options: EncodeOptions,
    overwrite: bool = False,
    late: int = 0,
) -> int:
    """Join encoded `pieces` (in order) into `dst` with the other streams of the input `info` describes;
    returns the number of frames. `late`: the seconds the pieces' times were written late (the job's
    piece_late_s). Nothing appears at `dst` unless it all succeeds."""
    if not pieces:
        raise VideoError(f"nothing to join into {dst}")
    import av

    try:
        sink = _JoinSink(dst, info, options, pieces[0], overwrite, late)
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot start {dst}: {_reason(exc)}") from None
    try:
        for piece in pieces:
            sink.add(piece)
    except BaseException:
        sink.abort()
        raise
    sink.commit()
    return sink.count


def join_frames(pieces: Sequence[Path], dst: Path, overwrite: bool = False) -> int:
    """Gather the PNG frames of piece folders (named by their place in the whole) into the folder `dst`:
    hard links where the file system has them (the pieces stay whole until the join is done), else copies."""
    pending = PendingOutput(dst, overwrite=overwrite, folder=True, kind="frames")
    count = 0
    try:
        for piece in pieces:
            for name in sorted(os.listdir(piece)):
                if name.endswith(".png"):
                    try:
                        os.link(piece / name, pending.path / name)
                    except OSError:
                        shutil.copyfile(piece / name, pending.path / name)
                    count += 1
        pending.commit()
    except BaseException:
        pending.abort()
        raise
    return count
