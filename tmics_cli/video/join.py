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
from .reader import SourceInfo, VideoError, _reason
from .writer import EncodeOptions, VideoSink, write_error


class _JoinSink(VideoSink):
    """A VideoSink whose video stream is copied from encoded pieces instead of encoded here."""

    def __init__(
        self, dst: Path, info: SourceInfo, options: EncodeOptions, first_piece: Path, overwrite: bool
    ) -> None:
        self.first_piece = first_piece
        self._last_dts: Fraction | None = None  # the last packet's decode time, in seconds
        super().__init__(dst, info, options, 0, 0, overwrite)

    def _video_stream(self, width: int, height: int) -> Any:
        import av

        with av.open(str(self.first_piece)) as piece:
            template = piece.streams.video[0]
            stream = self.container.add_stream_from_template(template)
            stream.time_base = template.time_base
        if self.info.rotation:
            stream.set_display_rotation(self.info.rotation)
        return stream

    def add(self, piece: Path) -> int:
        """Copy the video packets of one piece; returns how many frames it held."""
        import av

        frames = 0
        try:
            with av.open(str(piece)) as source:
                stream = source.streams.video[0]
                if (stream.codec_context.extradata or b"") != (self.stream.codec_context.extradata or b""):
                    raise VideoError(f"{piece.name} was encoded with other settings than the first part")
                for packet in source.demux(stream):
                    if not packet.size:
                        continue
                    seconds = float(packet.pts * stream.time_base) if packet.pts is not None else None
                    if self._last_dts is not None and packet.dts is not None:
                        last = round(self._last_dts / stream.time_base)
                        if packet.dts <= last and (packet.pts is None or last < packet.pts):
                            packet.dts = last + 1  # never a decode time back (joins of VFR pieces)
                    if packet.dts is not None:
                        self._last_dts = packet.dts * stream.time_base
                    packet.stream = self.stream  # mux rescales from the piece's time base
                    self.container.mux(packet)
                    frames += 1
                    if self.others is not None and seconds is not None:
                        self.others.copy_until(seconds + 0.5)  # pieces hold the output's clock
        except av.error.FFmpegError as exc:
            raise write_error(self.dst, exc, self.count + frames) from None
        self.count += frames
        return frames

    def _flush_video(self) -> None:
        pass  # copied packets: no encoder to flush


def join_video(
    pieces: Sequence[Path], dst: Path, info: SourceInfo, options: EncodeOptions, overwrite: bool = False
) -> int:
    """Join encoded `pieces` (in order) into `dst` with the other streams of the input `info` describes;
    returns the number of frames. Nothing appears at `dst` unless it all succeeds."""
    if not pieces:
        raise VideoError(f"nothing to join into {dst}")
    import av

    try:
        sink = _JoinSink(dst, info, options, pieces[0], overwrite)
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
