"""The organism: a tiny interleaved speech-text LM trained offline, shipped with the package."""
