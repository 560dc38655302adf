"""The real-recording corpus behind ``mka data real`` (see docs/real-corpus.md).

* :mod:`~training.data.real.sources`: source folders and archives, each file's licence;
* :mod:`~training.data.real.licences`: Debian copyright files and the licence policy;
* :mod:`~training.data.real.labelmap`: path patterns -> class and caption words;
* :mod:`~training.data.real.audio`: decoding and duplicate detection;
* :mod:`~training.data.real.split`: train / valid / held-out by source recording;
* :mod:`~training.data.real.clips`: windows, one-shot sequences, backgrounds, compositions;
* :mod:`~training.data.real.build`: the whole build; :mod:`~training.data.real.report` its reports;
* :mod:`~training.data.real.debian` and :mod:`~training.data.real.soundfont`: the Debian sources.
"""
