// Carrier of the precompiled LibTorch header (harness/pch.h) that every target reuses.
