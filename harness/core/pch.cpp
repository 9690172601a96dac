// Carrier of the precompiled LibTorch header (harness/core/pch.h) that every target reuses.
