"""Packaging Lookout for fleets: the AWS IoT Greengrass v2 component.

- ``greengrass``     ``lookout package greengrass``: wheels, models, a recipe with digests.
- ``recipe``         reading the recipe template and checking a recipe (references, access control).
- ``launch``         what the component's Startup step runs on the device.
- ``ipc_publisher``  the device's event publisher over Greengrass IPC (``publish_to_iot_core``).
- ``config_updates`` component configuration pushed by a deployment, applied live where safe.
"""
