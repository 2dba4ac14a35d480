"""The rain preview left this package, so that it need not import datasets.py."""

raise SystemExit("the rain preview moved: python tools/rain_preview.py --preview out.png --clip FRAMES")
