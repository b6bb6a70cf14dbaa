-- Units and quality words as devices in the field spell them (issue 6, item 4). Reference data,
-- the same for every tenant, kept by the database owner; the ingestors load it with the registry
-- and reload it when it changes (NOTIFY iot_registry_changed, sql/115_units.sql).
--
-- A payload's unit is matched against iot.units.unit and iot.unit_aliases.alias, ignoring white
-- space, first exactly, then ignoring case when that names one unit only. A reading in another
-- unit of the channel's quantity is converted: base = value * to_base_factor + to_base_offset.

create table iot.units (
  unit           text primary key,
  quantity       text not null,
  to_base_factor double precision not null,
  to_base_offset double precision not null default 0,
  description    text,
  constraint units_unit_not_blank check (btrim(unit) <> ''),
  constraint units_quantity_format check (quantity ~ '^[a-z][a-z0-9_]{0,62}$'),
  -- NaN sorts above Infinity in PostgreSQL, so these also refuse NaN.
  constraint units_to_base_factor_positive check (to_base_factor > 0 and to_base_factor < 'Infinity'),
  constraint units_to_base_offset_finite check (to_base_offset > '-Infinity' and to_base_offset < 'Infinity')
);
comment on table iot.units is E'@omit create,update,delete\n'
  'Units readings may arrive in. Two units of the same quantity convert through its base unit: '
  'base = value * to_base_factor + to_base_offset (°C: 1 and 273.15 to kelvin).';
comment on column iot.units.quantity is 'What is measured (temperature, pressure, velocity...); only units of one quantity convert.';

create table iot.unit_aliases (
  alias text primary key,
  unit  text not null,
  constraint unit_aliases_unit_fkey foreign key (unit) references iot.units (unit) on update cascade on delete cascade,
  constraint unit_aliases_alias_not_blank check (btrim(alias) <> '')
);
comment on table iot.unit_aliases is E'@omit create,update,delete\n'
  'Other spellings of a unit (F, degF, fahrenheit for °F). A unit''s own symbol needs no alias. '
  'Matched ignoring white space, exactly first, then ignoring case when only one unit matches.';
create index unit_aliases_unit_idx on iot.unit_aliases (unit);

insert into iot.units (unit, quantity, to_base_factor, to_base_offset, description) values
  ('K',          'temperature', 1,                   0,                    'kelvin (base)'),
  ('°C',         'temperature', 1,                   273.15,               'degree Celsius'),
  ('°F',         'temperature', 5.0 / 9,             459.67 * 5.0 / 9,     'degree Fahrenheit'),
  ('Pa',         'pressure',    1,                   0,                    'pascal (base)'),
  ('hPa',        'pressure',    100,                 0,                    'hectopascal'),
  ('kPa',        'pressure',    1000,                0,                    'kilopascal'),
  ('MPa',        'pressure',    1000000,             0,                    'megapascal'),
  ('mbar',       'pressure',    100,                 0,                    'millibar'),
  ('bar',        'pressure',    100000,              0,                    'bar'),
  ('PSI',        'pressure',    6894.757293168361,   0,                    'pound-force per square inch'),
  ('inHg',       'pressure',    3386.389,            0,                    'inch of mercury (conventional)'),
  ('mmHg',       'pressure',    133.322387415,       0,                    'millimetre of mercury'),
  ('atm',        'pressure',    101325,              0,                    'standard atmosphere'),
  ('m/s',        'velocity',    1,                   0,                    'metre per second (base)'),
  ('mm/s',       'velocity',    0.001,               0,                    'millimetre per second (vibration velocity)'),
  ('in/s',       'velocity',    0.0254,              0,                    'inch per second (vibration velocity)'),
  ('m/min',      'velocity',    1.0 / 60,            0,                    'metre per minute (web speed)'),
  ('ft/min',     'velocity',    0.3048 / 60,         0,                    'foot per minute (web speed)'),
  ('km/h',       'velocity',    1.0 / 3.6,           0,                    'kilometre per hour'),
  ('rpm',        'rotational_speed', 1.0 / 60,       0,                    'revolutions per minute (base: per second)'),
  ('sheets/h',   'sheet_rate',  1.0 / 3600,          0,                    'sheets per hour (base: per second)'),
  ('sheets/min', 'sheet_rate',  1.0 / 60,            0,                    'sheets per minute'),
  ('units',      'count',       1,                   0,                    'counted units (base)'),
  ('%RH',        'relative_humidity', 1,             0,                    'percent relative humidity (base)'),
  ('W',          'power',       1,                   0,                    'watt (base)'),
  ('kW',         'power',       1000,                0,                    'kilowatt'),
  ('MW',         'power',       1000000,             0,                    'megawatt'),
  ('hp',         'power',       745.69987158227022,  0,                    'mechanical horsepower'),
  ('kg',         'mass',        1,                   0,                    'kilogram (base)'),
  ('g',          'mass',        0.001,               0,                    'gram'),
  ('t',          'mass',        1000,                0,                    'tonne'),
  ('lb',         'mass',        0.45359237,          0,                    'pound'),
  ('oz',         'mass',        0.028349523125,      0,                    'ounce');

insert into iot.unit_aliases (alias, unit) values
  ('kelvin', 'K'),
  ('C', '°C'), ('degC', '°C'), ('deg_C', '°C'), ('ºC', '°C'), ('celsius', '°C'), ('centigrade', '°C'),
  ('F', '°F'), ('degF', '°F'), ('deg_F', '°F'), ('ºF', '°F'), ('fahrenheit', '°F'),
  ('pascal', 'Pa'), ('kilopascal', 'kPa'), ('millibar', 'mbar'), ('bars', 'bar'), ('barg', 'bar'),
  ('psig', 'PSI'), ('lbf/in2', 'PSI'), ('lbf/in²', 'PSI'), ('lb/in2', 'PSI'),
  ('mm/sec', 'mm/s'), ('in/sec', 'in/s'), ('ips', 'in/s'), ('m/sec', 'm/s'), ('mpm', 'm/min'), ('fpm', 'ft/min'),
  ('r/min', 'rpm'), ('rev/min', 'rpm'),
  ('sheets/hr', 'sheets/h'), ('sheets/hour', 'sheets/h'), ('sph', 'sheets/h'), ('sheets/minute', 'sheets/min'),
  ('unit', 'units'), ('pcs', 'units'), ('pc', 'units'), ('count', 'units'), ('counts', 'units'), ('cnt', 'units'), ('ea', 'units'),
  ('%', '%RH'), ('RH', '%RH'), ('percentRH', '%RH'),
  ('watt', 'W'), ('watts', 'W'), ('kilowatt', 'kW'), ('kilowatts', 'kW'), ('megawatt', 'MW'),
  ('kilogram', 'kg'), ('kilograms', 'kg'), ('kgs', 'kg'), ('gram', 'g'), ('grams', 'g'), ('tonne', 't'),
  ('lbs', 'lb'), ('pound', 'lb'), ('pounds', 'lb'), ('ounce', 'oz');

-- Quality words: every reading is stored as GOOD, UNCERTAIN or BAD; the word it came with is kept
-- in the reading's metadata when it is another word. Matched ignoring case: exact words first,
-- then the longest word marked match_prefix that begins the word (OPC UA status names all begin
-- with their severity: GoodClamped, UncertainLastUsableValue, BadSensorFailure...).
create table iot.quality_words (
  word         text primary key,
  quality      text not null,
  match_prefix boolean not null default false,
  description  text,
  constraint quality_words_word_trimmed check (word = btrim(word) and word <> ''),
  constraint quality_words_quality_valid check (quality in ('GOOD', 'UNCERTAIN', 'BAD'))
);
comment on table iot.quality_words is E'@omit create,update,delete\n'
  'Quality words devices send, and the stored quality (GOOD, UNCERTAIN or BAD) each means. Matched ignoring case; '
  'match_prefix also matches words that begin with it. An unknown word is stored as UNCERTAIN.';
create unique index quality_words_word_upper_key on iot.quality_words (upper(word));

insert into iot.quality_words (word, quality, match_prefix, description) values
  ('GOOD',         'GOOD',      true,  'and OPC UA Good* status names (GoodClamped, GoodLocalOverride...)'),
  ('UNCERTAIN',    'UNCERTAIN', true,  'and OPC UA Uncertain* status names (UncertainLastUsableValue...)'),
  ('BAD',          'BAD',       true,  'and OPC UA Bad* status names (BadSensorFailure, BadCommunicationFailure...)'),
  ('VERIFIED',     'GOOD',      false, 'the seed system''s word for a checked reading'),
  ('VALID',        'GOOD',      false, null),
  ('OK',           'GOOD',      false, null),
  ('UNVERIFIED',   'UNCERTAIN', false, null),
  ('SUSPECT',      'UNCERTAIN', false, null),
  ('QUESTIONABLE', 'UNCERTAIN', false, null),
  ('ESTIMATED',    'UNCERTAIN', false, null),
  ('SUBSTITUTED',  'UNCERTAIN', false, null),
  ('STALE',        'UNCERTAIN', false, null),
  ('INVALID',      'BAD',       false, null),
  ('ERROR',        'BAD',       false, null),
  ('FAULT',        'BAD',       false, null),
  ('FAILED',       'BAD',       false, null),
  ('FAILURE',      'BAD',       false, null);
