"""AWS SNS SMS via boto3: ``Publish`` to a phone number.

Region, endpoint URL (a VPC endpoint, LocalStack or moto), sender id, origination
number, SMS type and max price come from config; credentials from boto3's usual chain
(environment, profile, instance role). Retries are the relay's job, so boto3's own
retries are off.
"""

from __future__ import annotations

from typing import Any

from lookout.relay.message import Outgoing
from lookout.relay.notifiers.base import DeliveryError

# Errors where trying again later can succeed (throttling, outages, credentials being fixed).
_PERMANENT = {"InvalidParameter", "InvalidParameterValue", "ValidationError", "OptedOut", "InvalidParameterException"}


class SnsNotifier:
    def __init__(
        self,
        name: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        sender_id: str | None = None,
        origination_number: str | None = None,
        sms_type: str = "Transactional",
        max_price_usd: float | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.name = name
        config = Config(
            region_name=region,
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
        )
        self._client = boto3.session.Session().client("sns", endpoint_url=endpoint_url, config=config)
        self.attributes = _attributes(sender_id, origination_number, sms_type, max_price_usd)

    def send(self, message: Outgoing) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.publish(
                PhoneNumber=message.address, Message=message.text, MessageAttributes=self.attributes
            )
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Unknown")
            text = err.response.get("Error", {}).get("Message", str(err))
            raise DeliveryError(self.name, f"SNS {code}: {text}", retryable=code not in _PERMANENT) from None
        except BotoCoreError as err:
            raise DeliveryError(self.name, f"SNS unreachable or not configured: {err}", retryable=True) from None
        return str(response.get("MessageId", ""))

    def close(self) -> None:
        self._client.close()


def _attributes(
    sender_id: str | None, origination: str | None, sms_type: str, max_price: float | None
) -> dict[str, Any]:
    attrs = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type}}
    if sender_id:
        attrs["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender_id}
    if origination:
        attrs["AWS.MM.SMS.OriginationNumber"] = {"DataType": "String", "StringValue": origination}
    if max_price is not None:
        attrs["AWS.SNS.SMS.MaxPrice"] = {"DataType": "Number", "StringValue": f"{max_price:.2f}"}
    return attrs
