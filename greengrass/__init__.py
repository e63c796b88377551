"""Packaging Lookout for fleets: the AWS IoT Greengrass v2 component (part ``lookout.greengrass``).

- ``package``        ``lookout package greengrass``: wheels, models, a recipe with digests.
- ``recipe``         reading the recipe template (``recipe.yaml`` here) and checking a recipe.
- ``launch``         what the component's Startup step runs on the device (``scripts/run.sh``).
- ``ipc_publisher``  the device's event publisher over Greengrass IPC (``publish_to_iot_core``).
- ``config_updates`` component configuration pushed by a deployment, applied live where safe.
"""
