// The GraphQL types and Subscription fields of the live events: the seed's nine with the contract's
// arguments and return types (contract graphql.subscription), alert workflow changes, and the
// project's own two. The row types (EquipmentHealthScore, ...) are PostGraphile's; every other
// type here is served from a NOTIFY payload (see ../subscriptions.ts).
import { gql } from 'postgraphile';

export const typeDefs = gql`
  """One stored batch of readings for the subscriber's tenant (one notice per batch, not per reading)."""
  type TelemetryBatch {
    """The tenant the readings belong to."""
    tenantId: UUID!
    """Readings stored by the batch."""
    readingCount: Int!
    """Devices the batch had readings of."""
    deviceCount: Int!
    """Time of the batch's oldest reading."""
    firstTime: Datetime
    """Time of the batch's newest reading."""
    lastTime: Datetime
  }

  """A newly raised equipment event (the project's own shape; equipmentEventTriggered gives the EquipmentEvent row)."""
  type EquipmentEventNotice {
    """The event's id."""
    id: UUID!
    """When the event happened."""
    eventTimestamp: Datetime!
    """The tenant it belongs to."""
    tenantId: UUID!
    """The work center it happened on."""
    workCenterId: UUID!
    """The device that raised it, if any."""
    iotDeviceId: UUID
    """The sensor type concerned, if any."""
    sensorType: String
    """Kind of event (STARTUP, ANOMALY_DETECTED, SENSOR_OUT_OF_RANGE, ...)."""
    eventType: String!
    """The equipment's own code for it, if any."""
    eventCode: String
    """INFO, WARNING, ERROR or CRITICAL."""
    severity: String!
    """What happened, in words."""
    eventDescription: String!
    """The production run active on the work center at the time."""
    productionRunId: UUID
  }

  """A new health score whose status differs from the work center's previous score (e.g. GOOD -> WARNING)."""
  type EquipmentHealthStatusChange {
    """The id of the new health score."""
    healthScoreId: UUID!
    """The work center scored."""
    workCenterId: UUID!
    """The work center's facility."""
    facilityId: UUID
    """Status of the previous score (by score time)."""
    previousStatus: String
    """Status of the new score."""
    newStatus: String!
    """The new overall health score, 0 to 100."""
    overallHealthScore: Float
    """When the new score was computed for."""
    scoreTimestamp: Datetime!
    """IMPROVING, STABLE or DEGRADING."""
    trendDirection: String
    """What to do about it, if the score says."""
    recommendedAction: String
    """The new score itself (its column fields; relations are not available in subscription payloads)."""
    score: EquipmentHealthScore!
  }

  """An anomaly detected in a device's readings (an ANOMALY_DETECTED equipment event)."""
  type EquipmentAnomaly {
    """The id of the ANOMALY_DETECTED equipment event."""
    eventId: UUID!
    """When the anomaly was detected (reading time)."""
    eventTimestamp: Datetime!
    """The facility of the work center."""
    facilityId: UUID
    """The work center of the device."""
    workCenterId: UUID!
    """The device whose readings are anomalous."""
    iotDeviceId: UUID
    """The sensor type of the anomalous channel."""
    sensorType: String
    """INFO, WARNING, ERROR or CRITICAL."""
    severity: String!
    """The detector's code for the kind of anomaly (spike, drop, step...)."""
    eventCode: String
    """What was detected, in words."""
    description: String
    """The reading value that was judged anomalous."""
    value: Float
    """How many standard deviations the value lies from the channel's mean, when the detector says."""
    zScore: Float
    """Everything the detector recorded (mean, stddev, sigma, ...)."""
    metadata: JSON
  }

  """A change to a predictive-maintenance alert: created, or its workflow status, severity or urgency changed."""
  type PredictiveMaintenanceAlertChange {
    """CREATED, ACKNOWLEDGED, SCHEDULED, IN_PROGRESS, RESOLVED or UPDATED (severity or urgency changed)."""
    change: String!
    """The workflow status before this change (null when created)."""
    previousStatus: String
    """The workflow status now."""
    status: String!
    """Severity CRITICAL or urgency IMMEDIATE."""
    critical: Boolean!
    """Critical now and not before (or created critical)."""
    becameCritical: Boolean!
    """The alert's id."""
    alertId: UUID!
    """The alert's work center."""
    workCenterId: UUID!
    """The work center's facility."""
    facilityId: UUID
    """The alert as committed (its column fields; relations are not available in subscription payloads)."""
    alert: PredictiveMaintenanceAlert!
  }

  """One new point of an SPC control chart (a reading of a channel with active control limits)."""
  type SPCControlChartDataPoint {
    """The control chart: <device code>.<SENSOR TYPE> unless named otherwise."""
    parameterCode: String!
    """The reading's time."""
    timestamp: Datetime!
    """The reading's value."""
    value: Float!
    """The chart's center line."""
    centerLine: Float
    """Center line + 3 sigma."""
    upperControlLimit: Float
    """Center line - 3 sigma."""
    lowerControlLimit: Float
    """The chart's sigma."""
    sigma: Float
    """+C/-C within 1 sigma of the center line, +B/-B within 2, +A/-A beyond."""
    zone: String
    """Beyond 3 sigma (outside the control limits)."""
    outOfControl: Boolean!
    """The control limit the point was judged against."""
    controlLimitId: UUID
    """The channel's work center."""
    workCenterId: UUID
    """The work center's facility."""
    facilityId: UUID
    """The device of the channel."""
    iotDeviceId: UUID
  }

  """An SPC out-of-control signal (Western Electric rules 1-4) on a control chart."""
  type SPCOutOfControlAlert {
    """The SPC alert's id."""
    id: UUID!
    """The Western Electric rule broken: 1 (beyond 3 sigma), 2 (2 of 3 beyond 2 sigma), 3 (4 of 5 beyond 1 sigma), 4 (8 on one side)."""
    rule: Int!
    """HIGH, MEDIUM or LOW."""
    severity: String!
    """When the signal was detected (time of the reading that completed it)."""
    detectedAt: Datetime!
    """The value that completed it."""
    value: Float
    """What the rule saw."""
    details: JSON
    """When the alert row was stored."""
    createdAt: Datetime
    """The control chart."""
    parameterCode: String
    """The channel's work center."""
    workCenterId: UUID!
    """The work center's facility."""
    facilityId: UUID
    """The device of the channel."""
    iotDeviceId: UUID
    """The channel."""
    channelId: UUID
    """The control limit broken."""
    controlLimitId: UUID
  }

  extend type Subscription {
    """Fires after each stored batch of readings of your tenant."""
    telemetryIngested: TelemetryBatch
    """Fires for each new equipment event of your tenant."""
    equipmentEventRaised: EquipmentEventNotice
    """Each new health score of the work center. Relation fields (workCenter) are refused: query them by id."""
    equipmentHealthScoreUpdated(workCenterId: ID!): EquipmentHealthScore!
    """Each new health score of a work center of the facility whose status differs from the previous score's."""
    equipmentHealthStatusChanged(facilityId: ID!): EquipmentHealthStatusChange!
    """Each anomaly detected on a device of the facility."""
    equipmentAnomalyDetected(facilityId: ID!): EquipmentAnomaly!
    """Each new predictive-maintenance alert of a work center of the facility."""
    predictiveMaintenanceAlertCreated(facilityId: ID!): PredictiveMaintenanceAlert!
    """Each alert of your tenant that is created critical or becomes critical (severity CRITICAL or urgency IMMEDIATE). tenantId must be your token's."""
    criticalAlertTriggered(tenantId: ID!): PredictiveMaintenanceAlert!
    """Every change of a predictive-maintenance alert (created, acknowledged, scheduled, in progress, resolved, severity/urgency updated), of the facility or of your whole tenant."""
    predictiveMaintenanceAlertChanged(facilityId: ID): PredictiveMaintenanceAlertChange!
    """The device's latest reading of each sensor type, at most once per device per LIVE_READING_INTERVAL_MS (one event per reading)."""
    sensorReadingUpdated(iotDeviceId: ID!): SensorReading!
    """Each new equipment event of the work center."""
    equipmentEventTriggered(workCenterId: ID!): EquipmentEvent!
    """Each new point of the control chart (one event per point; at most the 50 newest per ingest batch)."""
    spcNewMeasurement(parameterCode: String!): SPCControlChartDataPoint!
    """Each new SPC out-of-control alert of your tenant (tenantId must be your token's), optionally of one facility."""
    spcNewAlert(tenantId: ID!, facilityId: ID): SPCOutOfControlAlert!
  }
`;
