"""Local fake platform servers built from each platform's documented request/response/callback
formats (each module names the pages it follows), and generators of signed/encrypted callbacks."""
