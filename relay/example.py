"""``lookout relay --example-config``: every key, commented, with its default (a test loads it)."""

EXAMPLE_CONFIG = """\
# Lookout relay configuration (lookout relay --config relay.yaml).
# Every key is optional; the value shown is the default unless the comment says "example".
# Any key can be overridden from the environment: LOOKOUT_RELAY__<SECTION>__<KEY>=value
# (e.g. LOOKOUT_RELAY__MQTT__HOST=broker.local). Relative paths are relative to this file.
# Secrets are never written here: the config names the environment variable that holds each one.

mqtt:
  host: 127.0.0.1
  port: 1883                     # 8883 with TLS (AWS IoT Core, EMQX, mosquitto)
  client_id: lookout-relay       # stable and unique per relay instance: the broker keeps its session by it
  keepalive: 30
  username: null
  password_env: null             # name of the env var holding the broker password
  tls: null                      # example: {ca_file: AmazonRootCA1.pem, cert_file: relay.cert.pem, key_file: relay.private.key}
  clean_start: false             # keep the session: events published while the relay restarts wait in the broker
  session_expiry: 86400          # seconds the broker keeps that session (size its queue: docs/deployment.md)
  connect_timeout: 10

topics:
  prefix: dt/lookout             # devices publish on <prefix>/<device_id>/match
  share_group: lookout-relay     # $share/<group>/...: relays in one group split the events; null subscribes alone

store:
  type: sqlite                   # sqlite: one file, one relay host. postgresql: shared by several relays
  path: relay.sqlite             # sqlite only
  synchronous: full              # sqlite only. full: every accepted batch is fsynced before the broker is acknowledged
  dsn: null                      # postgresql only, WITHOUT a password. example: "host=db.internal dbname=lookout user=relay sslmode=verify-full"
  password_env: null             # postgresql only. example: LOOKOUT_DB_PASSWORD (or libpq's password file: passfile=, PGPASSFILE, ~/.pgpass)
  pool_size: 4                   # postgresql only: connections per relay process
  connect_timeout_s: 10          # postgresql only: how long to wait for the database at start
  claim_lease_s: 120             # sqlite only: deliveries claimed by a relay process that died are retried after this
                                 # (raised to 32 notifier timeouts + 30 s if that is longer)
  retention_days: 30             # history, finished alerts and their crops are deleted after this
  seen_ids_days: 7               # how long an event id is remembered (redeliveries are ignored)

dedup:
  window_s: 60                   # sightings of one person within this of an alert's first sighting are one alert

directory:
  path: null                     # REQUIRED with recipients. example: /var/lib/lookout/bundle/gallery.sqlite: the newest
                                 # bundle's people (names in the texts, jurisdictions for the policy, withdrawals)

policy:                          # the relay's own check of every event (docs/relay.md): fail closed
  file: null                     # a policy file as for gallery build and devices; null: built-in (deny US-IL, unknown)
  require_directory: true        # false: a gallery without a directory alerts on the devices' word alone

galleries:                       # by the event's gallery_id; 'default' is required
  default:
    purpose: missing-persons     # or accountability (review on by default); the purpose the policy is asked about
    review: null                 # true: hold alerts until a person confirms them (lookout review, the console)
    directory: null              # this gallery's gallery.sqlite; null: directory.path

notifiers:                       # name -> settings; recipients refer to these names
  console:
    type: console
    path: null                   # a file: JSON lines instead of printing
  # sms:                         # example: AWS SNS (credentials from boto3's usual chain)
  #   type: sns
  #   region: us-east-1
  #   endpoint_url: null
  #   sender_id: null
  #   origination_number: null
  #   sms_type: Transactional
  #   max_price_usd: null
  #   timeout_s: 5
  # twilio:                      # example
  #   type: twilio
  #   account_sid: ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
  #   auth_token_env: TWILIO_AUTH_TOKEN
  #   from_number: "+15555550100"
  # ops:                         # example: signed JSON webhook
  #   type: webhook
  #   url: https://hooks.example.org/lookout   # http:// only for loopback; shown as https://hooks.example.org/***
  #   url_env: null              # instead of url: a variable holding it, where the URL is the credential (Slack, Teams)
  #   secret_env: LOOKOUT_WEBHOOK_SECRET       # HMAC-SHA256 key
  #   timeout_s: 5
  #   include_crop: false        # true: add the sighting crop (base64 JPEG) where the device sent one

recipients:
  - name: console
    notifier: console
    address: ""                  # E.164 phone number for sns/twilio
    galleries: ["*"]             # names under galleries (a name not there is refused at load), or "*"
    jurisdictions: ["*"]         # people there (US-CA or California; US-CA covers US-CA-LA; US every state), or "*"

rate_limits:                     # flood protection; held alerts are summarised, never dropped
  per_recipient: {count: 60, per_s: 600}
  overall: {count: 600, per_s: 600}
  summary_after_s: 60            # a held alert reaches its recipient in a summary this soon

retry:
  initial_s: 1
  max_s: 300
  give_up_after_s: 86400

review:
  url_template: null             # legacy link template, e.g. https://lookout.example/review/{alert_id}
  suppress_for_s: 86400          # after a rejection: the same person at the same device(s) is not alerted

console_url: null                # example: https://lookout.example (links go to <console_url>/alerts/<id>)

gaps:                            # per-device sequence numbers (devices that send them)
  grace_s: 120                   # a missing number is reported once the next one came this long ago
  scan_every_s: 15

metrics:
  port: null                     # example: 9464 -> /metrics, /healthz, /readyz on host:port
  host: 127.0.0.1
  log_every_s: 60
"""
