"""`lookout demo` (``run``) and `lookout bench device` (``device_bench``): the whole system end to end
on this machine. Like the CLI, this is the top of the layering: it may use every part."""
