"""Everything of the input besides the derained video, carried into the output: `StreamCopy`.

`ffmpeg -map 0` is the reference: every audio, subtitle, data and extra video stream (cover art too), the
attachments (fonts of MKV), the chapters and the tags of the container and of each stream (language,
title, handler name) with their dispositions (default, forced, ...). Packets are copied without
re-encoding and muxed in step with the video as it is written, so memory does not grow with the length.

Where the output container cannot hold a stream as it is, it is converted as ffmpeg would: audio to AAC
(Opus for WebM), text subtitles (SubRip, ASS, WebVTT, mov_text) to the container's text format (mov_text
for MP4/MOV, WebVTT for WebM, ASS for MKV). What still cannot be kept (attachments outside MKV, bitmap
subtitles in MP4, data streams a muxer refuses, chapters in TS/AVI, a stream's start offset from the
video in AVI) is listed by `dropped_note()`, which the sink turns into a warning before it writes; the
titles, languages and dispositions a muxer leaves out without an error are read back from the finished
file by `unkept_note()`, a second warning at the end. Whether a muxer takes
a stream is asked of the muxer itself: the stream is set up in a scratch container in memory, which is
written whole (header, the stream's first packet for audio and video, trailer: MP4 checks a channel layout
only as it finishes), before the real output is touched.

Tags that describe the old encoding are dropped as ffmpeg drops or rewrites them: `encoder` (the muxer
writes its own), MP4 brands, and Matroska's per-stream statistics (DURATION, NUMBER_OF_FRAMES, BPS, ...).
"""

from __future__ import annotations

import io
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .reader import SourceInfo, jumps, main_video, open_media
from .timeline import Timeline, may_jump

_FALLBACK_AUDIO = {".webm": "libopus"}
# the text subtitle codec each container takes (what ffmpeg picks for it)
_TEXT_SUBTITLES = {
    "mp4": "mov_text", "mov": "mov_text", "ipod": "mov_text", "webm": "webvtt", "matroska": "ass"
}  # fmt: skip
_CHAPTERS = {"matroska", "webm", "mp4", "mov", "ipod"}  # muxers that write chapters
_ATTACHMENTS = {"matroska"}  # WebM accepts attachment streams but writes nothing of them
_COVERS = {"mp4", "ipod"}  # attached pictures (covr; not written in MOV); elsewhere a cover is a video track
# the container tags a few muxers write (any other is lost); the others write all, or say which they keep
_FEW_TAGS = {
    "mpegts": {"service_name", "service_provider", "title"},
    "avi": {
        "artist", "comment", "copyright", "date", "genre", "language", "title", "album", "track",
        "encoder", "timecode", "encoded_by",
    },
}  # fmt: skip

# avformat_query_codec cannot tell for MPEG-TS (PyAV lists 8 codecs); these are the ones it carries.
_MPEGTS_CODECS = {"h264", "hevc", "mpeg2video", "mpeg1video", "aac", "mp3", "mp2", "ac3", "eac3", "opus"}
_MPEGTS_OTHERS = {"dvb_subtitle", "dvb_teletext", "smpte_klv", "timed_id3"}

# describe the old file's muxer (AVI's ISFT reads as `software`); the output's muxer writes its own
_CONTAINER_DROPPED = {"encoder", "software", "major_brand", "minor_version", "compatible_brands"}
_STREAM_STATISTICS = {
    "duration",
    "number_of_frames",
    "number_of_bytes",
    "bps",
    "_statistics_tags",
    "_statistics_writing_app",
    "_statistics_writing_date_utc",
}
# describe the encoding of a stream that is re-encoded here (WebM's alpha_mode: an alpha plane it has not)
_ENCODING_TAGS = {"encoder", "vendor_id", "alpha_mode"}
# tags the MP4/MOV muxer writes in its usual atoms; any other makes it write them all as `mdta` keys
_MOV_KNOWN = {
    "title", "artist", "album_artist", "author", "composer", "album", "date", "comment", "genre",
    "copyright", "grouping", "lyrics", "description", "synopsis", "show", "episode_id", "network",
    "keywords", "track", "disc", "compilation", "media_type", "creation_time", "location",
}  # fmt: skip
_COVER_TYPES = {"mjpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png"), "bmp": ("bmp", "image/bmp")}
SUBTITLE_LOOKBACK = 10.0  # seconds read before --start, for a subtitle shown since before the cut
_VIEWER_FLAGS = {
    "default", "dub", "original", "comment", "lyrics", "karaoke", "forced", "hearing_impaired",
    "visual_impaired", "clean_effects", "non_diegetic", "captions", "descriptions",
}  # fmt: skip
_SYNC_TOLERANCE = 0.04  # seconds of audio-video offset below what viewers notice (ITU-R BT.1359: 45 ms)
_NO_START_OFFSET = {"avi"}  # muxers that start every stream at its first packet, whatever its time
_READ_AHEAD = 5000  # packets read ahead at most for the video's next part (where only the audio jumps)
_END_MARGIN = 10.0  # past --end by this much, no stream has packets left before it (interleaving delta)
# the standard channel layouts of each channel count (encoders take some of them)
_LAYOUTS = {
    1: ("mono",), 2: ("stereo",), 3: ("2.1", "3.0", "3.0(back)"), 4: ("4.0", "quad", "quad(side)", "3.1"),
    5: ("5.0", "5.0(side)", "4.1"), 6: ("5.1", "5.1(side)", "6.0", "hexagonal"),
    7: ("6.1", "6.1(back)", "7.0"), 8: ("7.1", "7.1(wide)", "octagonal"),
}  # fmt: skip
_TRIAL_PACKETS = 2000  # packets read at most for the first packet of each audio and video stream


def container_tags(metadata: dict[str, str]) -> dict[str, str]:
    """The container's tags to write again: all but those that describe the old file's encoding."""
    return {k: v for k, v in metadata.items() if k.lower() not in _CONTAINER_DROPPED}


def stream_tags(metadata: dict[str, str], reencoded: bool, mov: bool = False) -> dict[str, str]:
    """A stream's tags to write again: language, title, handler name, ...; not Matroska's statistics
    (the muxer writes its own DURATION), nor for a re-encoded stream the old encoder's name. `mov`: tags
    read from MP4/MOV, whose demuxer names a track's title `name` (which every muxer writes as `title`)."""
    kept = {}
    for key, value in metadata.items():
        base = key.lower().split("-")[0]  # Matroska writes statistics per language too: BPS-eng
        if base in _STREAM_STATISTICS or (reencoded and base in _ENCODING_TAGS):
            continue
        kept[key] = value
    if mov and "name" in kept and not any(key.lower() == "title" for key in kept):
        kept["title"] = kept.pop("name")
    return kept


def accepts(container: Any, encoder_name: str, codec_name: str, supported: set[str] | None = None) -> bool:
    """Whether the output container can hold this codec (by the codec tables; `supported`: the
    container's supported_codecs, when already known)."""
    if container.format.name == "mpegts":
        return codec_name in _MPEGTS_CODECS or codec_name in _MPEGTS_OTHERS
    supported = container.supported_codecs if supported is None else supported
    return encoder_name in supported or codec_name in supported


def codec_name(stream: Any) -> str:
    """The codec's usual name (ffprobe's: subrip, hdmv_pgs_subtitle), or the tag of a codec-less stream."""
    ctx = stream.codec_context
    if ctx is not None:
        return getattr(ctx.codec, "canonical_name", None) or ctx.name or "unknown"
    try:
        tag = stream.codec_tag
    except Exception:  # noqa: BLE001 - PyAV reads it from a codec context these streams lack
        tag = ""
    return tag.strip("\x00 ") or stream.type


@dataclass
class _Copy:
    """One input stream with packets, and how it reaches the output."""

    kind: str  # "copy", "audio" (decode + encode), "subtitle" (decode + encode to a text codec)
    source: Any  # the input stream
    out: Any  # the output stream
    sparse: bool  # subtitles and data: no packet for long spans; never waited for at --end
    next_pts: int | None = None  # re-encoded audio: where the next decoded frame follows on, in samples
    shape: tuple[str, str, int] | None = None  # re-encoded audio: the first frame's format, layout, rate
    converters: dict[tuple[str, str, int], Any] = field(default_factory=dict)  # other shapes into `shape`


class StreamCopy:
    """The input's streams (but the video derained, reader.main_video), chapters and tags, into the
    output `out`, interleaved by time with the video: `copy_until(t)` as the video reaches t seconds,
    `copy_until(None)` at the end. `video_tags` and `video_disposition` are for the sink's encoded video
    stream."""

    def __init__(self, info: SourceInfo, out: Any, suffix: str, audio: bool = True) -> None:
        self.input = open_media(info.path)
        self.out = out
        self.format = out.format.name
        self.mov = self.input.format.name.startswith("mov")  # the MP4/MOV demuxer
        self.label = suffix.lstrip(".") or self.format
        self.suffix = suffix
        self.shift = info.shift  # seconds taken off every timestamp (the video's are shifted alike)
        self.pixel_aspect, self.rotation = info.pixel_aspect, info.rotation
        self.first = info.origin + info.start if info.start else None  # absolute cut points, seconds
        self.last = info.origin + info.end if info.end is not None else None
        self.supported = set() if self.format == "mpegts" else out.supported_codecs
        self.dropped: list[str] = []
        self.attachments_dropped: list[str] = []
        self.copies: dict[int, _Copy] = {}
        self.covers: list[tuple[Any, Any]] = []  # (output stream, packet) muxed once, at the start
        self.pending: Any = None
        self.past_end: set[int] = set()
        self.ahead: deque[Any] = deque()  # packets read ahead of the video's timeline
        try:
            self._plan(audio)
            self.dense = {i for i, c in self.copies.items() if not c.sparse}
            streams = [c.source for c in self.copies.values()]
            self.done = not streams
            # where the clock may jump (MPEG-TS), the video's packets are read too, for its timeline
            video = main_video(self.input)
            self.video = video if streams and video.time_base and may_jump(self.input) else None
            self.timeline = Timeline(video.time_base) if self.video is not None else None
            self.parts: dict[int, Timeline] = {}  # each stream's own jumps: which part a packet is in
            self.last_dts: dict[int, int] = {}  # each stream's last decode time on the continuous clock
            seek = streams and self.first is not None
            if seek and self.video is not None and jumps(info.path):
                seek = False  # a time names a place in each part: read from the start
            if seek:
                subtitles = any(c.source.type == "subtitle" for c in self.copies.values())
                lookback = SUBTITLE_LOOKBACK if subtitles else 0.0
                self.input.seek(int(max(0.0, self.first - lookback) * 1_000_000), backward=True)
            wanted = streams + ([self.video] if self.video is not None else [])
            self.packets = self.input.demux(*wanted) if streams else iter(())
        except BaseException:
            self.input.close()
            raise

    # --- setting up the output ---

    def _plan(self, audio: bool) -> None:
        primary = main_video(self.input)
        self.video_tags = stream_tags(primary.metadata, reencoded=True, mov=self.mov)
        self.video_disposition = int(primary.disposition) & ~int(_disposition("attached_pic"))
        covers = []
        self.trial = self._first_packets(primary)
        for stream in self.input.streams:
            if stream.index == primary.index or (stream.type == "audio" and not audio):
                continue
            if stream.discard == _discard_all():
                continue  # the demuxer's own (MP4's chapter text track): the chapters are copied as such
            if stream.type == "attachment":
                self._attachment(stream)
            elif stream.type == "video" and stream.disposition & _disposition("attached_pic"):
                covers.append(stream)
            elif stream.type == "data" and "timecode" in stream.metadata and "timecode" in self.video_tags:
                continue  # a timecode track: the muxer writes it again from the video's timecode tag
            elif stream.type == "audio" and not _audio_known(stream):
                # its first packets lie beyond what the demuxer probes (ffmpeg drops it too): no muxer or
                # decoder can take it
                self.dropped.append(f"audio stream {stream.index} ({codec_name(stream)}, channels unknown)")
            elif stream.type in ("audio", "video", "subtitle", "data"):
                if not self._stream(stream):
                    self.dropped.append(f"{stream.type} stream {stream.index} ({codec_name(stream)})")
            else:
                self.dropped.append(f"stream {stream.index} ({stream.type})")
        tags = container_tags(self.input.metadata)
        self.out.metadata.update(tags)
        if self.format in _FEW_TAGS:
            lost = [key for key in tags if key.lower() not in _FEW_TAGS[self.format]]
            if lost:
                self.dropped.append(f"tag{'s' if len(lost) > 1 else ''} {', '.join(lost)}")
        # MP4/MOV write tags such as com.apple.quicktime.location.ISO6709 or make/model only as `mdta` keys
        mdta = self.format in ("mp4", "mov", "ipod") and any(not _mov_known(key) for key in tags)
        if mdta:
            self.out.container_options["movflags"] = "use_metadata_tags"
        if covers:
            self._covers(covers, mdta)
        self._chapters()
        if self.format in _NO_START_OFFSET:
            self._start_offsets(primary)
        # (output index, name, tags, disposition) of each stream as it was set up, for unkept_note
        video = self.out.streams.video[0]
        self.expected = [(video.index, _label(primary), dict(self.video_tags), self.video_disposition)] + [
            (c.out.index, _label(c.source), dict(c.out.metadata), int(c.source.disposition))
            for c in self.copies.values()
        ]

    def _first_packets(self, primary: Any) -> dict[int, tuple[bytes, bool]]:
        """The first packet with data of each audio and (not cover) video stream besides `primary`, by
        index, as (data, keyframe) for the trial writes of `_try`; read by a reader of its own, at most
        _TRIAL_PACKETS in."""
        wanted = [
            s.index
            for s in self.input.streams
            if s.index != primary.index
            and (s.type == "audio" or s.type == "video" and not s.disposition & _disposition("attached_pic"))
        ]
        found: dict[int, tuple[bytes, bool]] = {}
        if not wanted or self.format == "mpegts":
            return found
        with open_media(self.input.name) as reader:
            for count, packet in enumerate(reader.demux(*[reader.streams[i] for i in wanted])):
                if packet.size and packet.stream.index not in found:
                    found[packet.stream.index] = (bytes(packet), packet.is_keyframe)
                if len(found) == len(wanted) or count >= _TRIAL_PACKETS:
                    break
        return found

    def _start_offsets(self, primary: Any) -> None:
        """AVI has no start time per stream: a stream that starts later (or earlier) than the video in the
        input starts with it in the output. Each such offset beyond what a viewer notices is named."""

        def start(stream: Any) -> float | None:
            if stream.start_time is None or stream.time_base is None:
                return None
            seconds = float(stream.start_time * stream.time_base)
            return seconds if self.first is None else max(seconds, self.first)

        video = start(primary)
        for copy in self.copies.values():
            other = start(copy.source)
            if copy.sparse or video is None or other is None or abs(other - video) <= _SYNC_TOLERANCE:
                continue
            when = "after" if other > video else "before"
            name = f"{copy.source.type} stream {copy.source.index}"
            self.dropped.append(f"the start of {name} ({abs(other - video):.2f} s {when} the video)")

    def _attachment(self, stream: Any) -> None:
        name = stream.metadata.get("filename") or f"attachment {stream.index}"
        tags = self._tags(stream)
        if self.format in _ATTACHMENTS and self._try(_add_copy, stream, tags):
            _add_copy(self.out, stream, tags)
        else:
            self.attachments_dropped.append(name)

    def _stream(self, stream: Any) -> bool:
        """Set up the output stream for an input stream with packets; False when it cannot be kept."""
        name = codec_name(stream)
        encoder = stream.codec_context.name if stream.codec_context is not None else name
        sparse = stream.type in ("subtitle", "data")
        tags = self._tags(stream)
        if stream.codec_context is not None or stream.type == "data":
            held = stream.type == "data" or accepts(self.out, encoder, name, self.supported)
            trial = self.trial.get(stream.index)
            # audio whose channels have no order (PCM in Matroska): MP4 takes it as the usual layout of
            # that many channels, as ffmpeg's decoders guess it
            guess = _usual_layout(stream) if stream.type == "audio" else None
            for layout in [None] + ([guess] if guess else []):
                if held and self._try(_add_copy, stream, tags, layout, trial=trial):
                    added = _add_copy(self.out, stream, tags, layout)
                    self.copies[stream.index] = _Copy("copy", stream, added, sparse)
                    return True
        if stream.type == "audio":
            encoded = self._audio_encoder(stream)
            if encoded is not None:
                self.copies[stream.index] = _Copy("audio", stream, encoded, False)
            return encoded is not None
        target = _TEXT_SUBTITLES.get(self.format)
        text = stream.codec_context is not None and getattr(stream.codec_context.codec, "text_sub", False)
        if stream.type == "subtitle" and target and text:
            tags = self._tags(stream, reencoded=True)
            if target in self.supported and self._try(_add_subtitle, stream, target, tags):
                encoded = _add_subtitle(self.out, stream, target, tags)
                self.copies[stream.index] = _Copy("subtitle", stream, encoded, True)
                return True
        return False

    def _audio_encoder(self, stream: Any) -> Any | None:
        """The container cannot hold this audio as it is: an AAC (Opus for WebM) encoder to re-encode it,
        or None where the encoder or the muxer refuses it (too many channels)."""
        codec = _FALLBACK_AUDIO.get(self.suffix, "aac")
        rate = stream.codec_context.sample_rate or 48000
        if codec == "libopus":
            rate = 48000  # Opus takes 48/24/16/12/8 kHz only; the encoder resamples
        tags = self._tags(stream, reencoded=True)
        for layout in _encoder_layouts(stream):
            args = (stream, codec, rate, layout, tags)
            if self._try(_add_audio, *args):
                return _add_audio(self.out, *args)
        return None

    def _tags(self, stream: Any, reencoded: bool = False) -> dict[str, str]:
        return stream_tags(stream.metadata, reencoded, self.mov)

    def _covers(self, streams: list[Any], mdta: bool) -> None:
        """Cover art (a still picture shown as a video stream): an attachment again in Matroska, an
        attached picture where the container has them (MP4's covr, which the muxer leaves out when it
        writes `mdta` tags: the tags are kept first). Its one packet is read now."""
        pictures: dict[int, Any] = {}
        with open_media(self.input.name) as reader:  # the pictures come first: the demuxer queues them
            wanted = [reader.streams[s.index] for s in streams]
            for packet in reader.demux(*wanted):
                if packet.size and packet.stream.index not in pictures:
                    pictures[packet.stream.index] = packet
                if len(pictures) == len(wanted) or packet.pts is not None and packet.pts > 0:
                    break
        for stream in streams:
            packet = pictures.get(stream.index)
            name = codec_name(stream)
            if packet is None:
                self.dropped.append(f"video stream {stream.index} ({name}, a cover without its picture)")
                continue
            if self.format in _ATTACHMENTS and name in _COVER_TYPES:
                ext, mime = _COVER_TYPES[name]
                filename = stream.metadata.get("filename") or f"cover.{ext}"
                self.out.add_attachment(filename, stream.metadata.get("mimetype") or mime, bytes(packet))
                continue
            if mdta:
                self.dropped.append(f"video stream {stream.index} ({name} cover art, not beside custom tags)")
                continue
            tags = self._tags(stream)
            held = self.format in _COVERS and accepts(self.out, name, name, self.supported)
            if held and self._try(_add_copy, stream, tags):
                self.covers.append((_add_copy(self.out, stream, tags), packet))
                continue
            self.dropped.append(f"video stream {stream.index} ({name} cover art)")

    def _chapters(self) -> None:
        chapters = []
        for chapter in self.input.chapters():
            tb = chapter["time_base"] or Fraction(1, 1_000_000)
            start, end = float(chapter["start"] * tb), float(chapter["end"] * tb)
            if self.first is not None:
                if end <= self.first:
                    continue
                start = max(start, self.first)
            if self.last is not None:
                if start >= self.last:
                    continue
                end = min(end, self.last)
            start, end = start - self.shift, end - self.shift
            chapters.append(
                {
                    "id": chapter["id"],
                    "start": round(start / tb),
                    "end": round(end / tb),
                    "time_base": tb,
                    "metadata": dict(chapter["metadata"]),
                }
            )
        if not chapters:
            return
        if self.format in _CHAPTERS:
            self.out.set_chapters(chapters)
        else:
            self.dropped.append(f"{len(chapters)} chapter{'s' if len(chapters) > 1 else ''}")

    def _try(self, build: Callable[..., Any], *args: Any, trial: tuple[bytes, bool] | None = None) -> bool:
        """Whether the muxer takes the stream `build(container, *args)` adds (and its encoder opens, for
        one that encodes): asked of a scratch container in memory, written whole, with the packet `trial`
        ((data, keyframe) of the stream's first) at time 0 where given."""
        import av

        if self.format == "mpegts" and build is _add_copy:  # its header checks nothing; the tables tell
            return True
        scratch = av.open(io.BytesIO(), "w", format=self.format)
        try:
            added = build(scratch, *args)
            scratch.start_encoding()
            if trial is not None:
                packet = av.Packet(trial[0])
                packet.pts = packet.dts = 0
                packet.time_base = added.time_base
                packet.is_keyframe = trial[1]
                packet.stream = added
                scratch.mux(packet)
            scratch.close()
            return True
        except (av.error.FFmpegError, ValueError, TypeError):
            try:
                scratch.close()
            except Exception:  # noqa: BLE001 - a scratch file that cannot be finished is thrown away
                pass
            return False

    def unkept_note(self, written: Path, src: Path | str, dst: Path | str) -> str | None:
        """One line naming the titles, languages and dispositions (forced, hearing impaired, ...) of the
        streams that the muxer of `written` (the finished output, before its rename to `dst`) left out, as
        read back from it; None when it kept them all. Muxers drop these without a word (MPEG-TS keeps
        no titles nor dispositions, AVI no languages, MOV no forced flag); `default` counts only where the
        output has more than one stream of that type (alone, a stream is played anyway)."""
        try:
            with open_media(written) as back:
                found = [
                    (s.type, {k.lower() for k, v in s.metadata.items() if v}, s.disposition)
                    for s in back.streams
                ]
                video = back.streams.video[0] if back.streams.video else None
                aspect = video.sample_aspect_ratio if video is not None else None
                turned = _rotation(back, video) if self.rotation and video is not None else 0
        except Exception:  # noqa: BLE001 - an output that cannot be read back is not judged here
            return None
        of_type = Counter(kind for kind, _, _ in found)
        lost = []
        if self.rotation and video is not None and turned != self.rotation:
            lost.append(f"the display rotation of the video ({self.rotation} degrees: it plays unrotated)")
        if self.pixel_aspect and (aspect or 1) != self.pixel_aspect and video is not None:
            ratio = self.pixel_aspect
            lost.append(
                f"the pixel aspect ratio {ratio.numerator}:{ratio.denominator} of the video (it plays in "
                "another shape)"
            )
        for index, label, tags, disposition in self.expected:
            if index >= len(found) or found[index][0] != label.split()[0]:
                continue  # not where it was put: not judged
            kind, keys, flags = found[index]
            keys = keys | ({"title"} if "name" in keys else set())  # MP4/MOV keep a title as `name`
            given = {k.lower(): v for k, v in tags.items() if v and v != "und"}
            lost += [
                f"the {key} of {label}" for key in ("title", "language") if key in given and key not in keys
            ]
            for flag in _kept_flags():
                if disposition & ~int(flags) & int(flag) and (flag.name != "default" or of_type[kind] > 1):
                    lost.append(f"the {flag.name.replace('_', ' ')} flag of {label}")
        if not lost:
            return None
        return f"{src}: not kept in {dst} ({self.label} cannot hold them): {', '.join(lost)}"

    def dropped_note(self, src: Path | str, dst: Path | str) -> str | None:
        """One line naming what the output cannot hold, or None when everything is kept."""
        items = []
        if self.attachments_dropped:
            names, count = ", ".join(self.attachments_dropped), len(self.attachments_dropped)
            items.append(f"{count} attachment{'s' if count > 1 else ''} ({names})")
        items += self.dropped
        if not items:
            return None
        advice = "" if self.format == "matroska" else "; use .mkv to keep everything"
        return f"{src}: not kept in {dst} ({self.label} cannot hold them): {', '.join(items)}{advice}"

    # --- copying packets ---

    def copy_until(self, seconds: float | None) -> None:
        """Mux every packet that starts before `seconds` on the output's clock (all the remaining ones, up
        to --end, for None)."""
        for out_stream, packet in self.covers:
            packet.stream = out_stream
            self.out.mux(packet)
        self.covers = []
        while not self.done:
            packet = self.pending or self._take()
            self.pending = None
            if packet is None:
                self._finish()
                return
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None or packet.size == 0 or packet.time_base is None:
                continue
            absolute = float(pts * packet.time_base)
            index = packet.stream.index
            if self.last is not None and absolute >= self.last - 1e-6:
                if index in self.dense:
                    self.past_end.add(index)  # after --end
                if (self.dense and self.past_end >= self.dense) or absolute > self.last + _END_MARGIN:
                    self._finish()
                    return
                continue
            if seconds is not None and absolute - self.shift > seconds:
                self.pending = packet
                return
            copy = self.copies[index]
            if copy.sparse:
                if not self._trim(packet, pts, absolute):
                    continue
            elif self.first is not None and absolute < self.first - 1e-6:
                continue  # before --start (without it, encoder priming at t < 0 is kept)
            self._mux(copy, packet)

    def _take(self) -> Any:
        """The next packet to copy (None at the end), on the video's continuous clock where it jumps."""
        while True:
            packet = self.ahead.popleft() if self.ahead else next(self.packets, None)
            if packet is None or self.timeline is None:
                return packet
            if packet.stream.index == self.video.index:
                self.timeline.feed(packet)
                continue
            if self._rebase(packet):
                return packet

    def _rebase(self, packet: Any) -> bool:
        """Move a packet by the offset of its part: the part its own stream's jumps put it in, whose offset
        the video's timeline sets (read ahead for it where the audio jumps before the video does). False
        for a packet to leave out."""
        index = packet.stream.index
        own = self.parts.get(index)
        if own is None:
            own = self.parts[index] = Timeline(packet.time_base, sparse=self.copies[index].sparse)
        part = own.feed(packet)
        offsets = self.timeline.offsets
        while part >= len(offsets) and len(self.ahead) < _READ_AHEAD:
            later = next(self.packets, None)
            if later is None:
                break
            if later.stream.index == self.video.index:
                self.timeline.feed(later)
            else:
                self.ahead.append(later)
        ticks = offsets[min(part, len(offsets) - 1)]
        moved = round(ticks * self.video.time_base / packet.time_base) if ticks and packet.time_base else 0
        dts = packet.dts if packet.dts is not None else packet.pts
        last = self.last_dts.get(index)
        if dts is not None and last is not None and dts + moved <= last:
            # a part's audio ran on past its video, into the next part's first packets (its encoder's
            # priming): those are left out, as they would go back in time; a subtitle waits a tick
            if not self.copies[index].sparse:
                return False
            tick = self.copies[index].out.time_base or packet.time_base
            moved = last + max(1, math.ceil(tick / packet.time_base)) - dts
        if moved:
            if packet.pts is not None:
                packet.pts += moved
            if packet.dts is not None:
                packet.dts += moved
        if dts is not None:
            self.last_dts[index] = dts + moved
        return True

    def _trim(self, packet: Any, pts: int, absolute: float) -> bool:
        """Fit a subtitle (or data) packet into --start/--end: one shown since before --start starts at
        it, one still shown at --end ends there. False when it lies outside."""
        tb = packet.time_base
        end = absolute + float(packet.duration * tb) if packet.duration else None
        if self.first is not None and absolute < self.first - 1e-6:
            if end is None or end <= self.first + 1e-6:
                return False
            start = round(self.first / tb)
            packet.duration = max(1, packet.duration - (start - pts))
            packet.pts = start
            packet.dts = start
            absolute = float(start * tb)
        if self.last is not None and end is not None and end > self.last:
            packet.duration = max(1, round((self.last - absolute) / tb))
        return True

    def _mux(self, copy: _Copy, packet: Any) -> None:
        ticks = int(round(self.shift / packet.time_base)) if self.shift else 0
        if copy.kind == "audio":
            for decoded in copy.source.codec_context.decode(packet):
                self._encode_audio(copy, self._conform(copy, decoded))
            return
        if copy.kind == "subtitle":
            import av

            try:
                subtitle = copy.source.codec_context.decode2(packet)
            except av.error.FFmpegError:
                return  # a damaged subtitle: skipped, as a player would
            if subtitle is None or not len(subtitle):
                return
            encoded = copy.out.codec_context.encode_subtitle(subtitle)
            pts = packet.pts if packet.pts is not None else packet.dts
            encoded.pts = encoded.dts = pts - ticks
            encoded.duration = packet.duration
            encoded.time_base = packet.time_base
            encoded.stream = copy.out
            self.out.mux(encoded)
            return
        if ticks:
            if packet.pts is not None:
                packet.pts -= ticks
            if packet.dts is not None:
                packet.dts -= ticks
        packet.stream = copy.out
        self.out.mux(packet)

    def _conform(self, copy: _Copy, frame: Any) -> list[Any]:
        """Audio whose sample rate, channel layout or sample format changes midway (an MPEG-TS of joined
        broadcasts) converted to the first frames' (the encoder is set up for those), as ffmpeg does."""
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if copy.shape is None:
            copy.shape = shape
        if shape == copy.shape:
            return [frame]
        converter = copy.converters.get(shape)
        if converter is None:
            import av

            format, layout, rate = copy.shape
            converter = copy.converters[shape] = av.AudioResampler(format=format, layout=layout, rate=rate)
        return converter.resample(frame)

    def _encode_audio(self, copy: _Copy, frames: list[Any]) -> None:
        for frame in frames:
            self._time_audio(copy, frame)
            for encoded in copy.out.encode(frame):
                self.out.mux(encoded)

    def _time_audio(self, copy: _Copy, frame: Any) -> None:
        """Give a decoded audio frame its place on the output's clock, in samples: its own time less the
        shift (so a late audio track stays late), following on from the previous frame sample for sample
        (timestamp rounding never makes a click), except across a real gap of more than a frame in the
        input; never backwards. Times below 0 stay (as copied streams' do: the muxer shifts all alike)."""
        rate = frame.sample_rate
        pts = copy.next_pts
        if frame.pts is not None and frame.time_base is not None:
            start = round((float(frame.pts * frame.time_base) - self.shift) * rate)
            if pts is None or start - pts > frame.samples:
                pts = start
        frame.pts = pts if pts is not None else 0
        frame.time_base = Fraction(1, rate)
        copy.next_pts = frame.pts + frame.samples

    def _finish(self) -> None:
        self.done = True
        for copy in self.copies.values():
            if copy.kind == "audio":
                for converter in copy.converters.values():
                    self._encode_audio(copy, converter.resample(None))
                for encoded in copy.out.encode(None):
                    self.out.mux(encoded)

    def close(self) -> None:
        self.input.close()


def _rotation(container: Any, video: Any) -> int:
    """The display rotation of the first frame of `video` (degrees), as the reader takes it."""
    for frame in container.decode(video):
        return int(round(frame.rotation or 0))
    return 0


def _kept_flags() -> list[Any]:
    """The dispositions that tell a viewer something about a stream (not how it is stored)."""
    import av

    return [flag for flag in av.stream.Disposition if flag.name in _VIEWER_FLAGS]


def _label(stream: Any) -> str:
    return f"{stream.type} stream {stream.index}"


def _audio_known(stream: Any) -> bool:
    """Whether the demuxer found an audio stream's sample rate and channels."""
    context = stream.codec_context
    return context is not None and bool(context.sample_rate) and bool(context.layout.nb_channels)


def _disposition(name: str) -> int:
    import av

    return int(getattr(av.stream.Disposition, name))


def _discard_all() -> Any:
    import av

    return av.stream.Discard.all


def _mov_known(key: str) -> bool:
    return key.lower().split("-")[0] in _MOV_KNOWN


def _usual_layout(stream: Any) -> str | None:
    """For audio whose channels have no order, the usual layout of that many channels (4: 4.0, 6: 5.1),
    which ffmpeg's decoders guess; None for audio of a known layout, or of more channels than any has."""
    import av

    layout = stream.codec_context.layout if stream.codec_context is not None else None
    if layout is None or not layout.nb_channels or any(c.name != "NONE" for c in layout.channels):
        return None
    try:
        return av.AudioLayout(f"{layout.nb_channels}c").name
    except (ValueError, av.error.FFmpegError):
        return None


def _encoder_layouts(stream: Any) -> list[str]:
    """The channel layouts to ask an encoder for, best first: the audio's own (or the usual one of its
    channel count, for channels without order), then the others of that count, into which the audio is
    remixed as ffmpeg would for an encoder that takes none better (Opus: quad, not 4.0)."""
    own = _usual_layout(stream) or stream.codec_context.layout.name
    count = stream.codec_context.layout.nb_channels
    return [own] + [name for name in _LAYOUTS.get(count, ()) if name != own]


def _add_copy(out: Any, stream: Any, tags: dict[str, str], layout: str | None = None) -> Any:
    """An output stream copying `stream` (codec parameters, disposition), with the tags `tags`, and for
    audio the channel layout `layout` where given."""
    copied = out.add_stream_from_template(stream, opaque=True)  # the decoder's codec: no encoder looked up
    if layout is not None:
        copied.codec_context.layout = layout
    copied.metadata.clear()
    copied.metadata.update(tags)
    copied.disposition = stream.disposition
    return copied


def _add_audio(out: Any, stream: Any, codec: str, rate: int, layout: Any, tags: dict[str, str]) -> Any:
    """An output stream encoding the audio of `stream` as `codec` at `rate` Hz in the `layout` given."""
    encoded = out.add_stream(codec, rate=rate)
    if layout:
        encoded.layout = layout
    encoded.metadata.update(tags)
    encoded.disposition = stream.disposition
    return encoded


def _add_subtitle(out: Any, stream: Any, codec: str, tags: dict[str, str]) -> Any:
    """An output stream encoding the text subtitles of `stream` as `codec` (mov_text, webvtt, ass)."""
    decoder = stream.codec_context
    decoder.open(strict=False)  # a text decoder makes the ASS header the encoder starts from
    encoded = out.add_stream(codec)
    if decoder.subtitle_header:
        encoded.codec_context.subtitle_header = decoder.subtitle_header
    if stream.time_base:
        encoded.time_base = stream.time_base
    encoded.metadata.update(tags)
    encoded.disposition = stream.disposition
    return encoded
