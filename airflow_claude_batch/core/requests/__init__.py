"""Records become batch requests: input sources, rendering and its checks, unique ids, structured output,
passthrough columns, the marker request, the cacheable prefix, and shard files within the API's limits.
"""
