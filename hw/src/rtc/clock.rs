//! Calendar arithmetic and the MC146818's register encodings (BCD/binary, 12/24-hour).
//!
//! Dates use the proleptic Gregorian calendar; day counts are relative to 1970-01-01.

/// Broken-down wall-clock time, in binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    pub sec: u8,
    pub min: u8,
    pub hour: u8,
    /// 1 = Sunday ... 7 = Saturday (the PC BIOS convention for register 0x06).
    pub dow: u8,
    pub day: u8,
    pub month: u8,
    pub year: i64,
}

/// Days since 1970-01-01 of a Gregorian date (month 1-12, day 1-31; a day past the end of
/// its month rolls into the next one).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    // Count years from March so the leap day is the last day of the year.
    let (y, m) = if month <= 2 {
        (year - 1, month as i64 + 9)
    } else {
        (year, month as i64 - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // year of era, 0..=399
    let doy = (153 * m + 2) / 5 + day as i64 - 1; // day of (March-based) year
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // day of era
    era * 146_097 + doe - 719_468
}

/// Gregorian date of a day count since 1970-01-01: (year, month 1-12, day 1-31).
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + (month <= 2) as i64;
    (year, month, day)
}

/// Breaks seconds since the Unix epoch into fields.
pub fn fields_from_secs(secs: i64) -> Fields {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Fields {
        sec: (rem % 60) as u8,
        min: (rem / 60 % 60) as u8,
        hour: (rem / 3600) as u8,
        // 1970-01-01 was a Thursday (5 when Sunday is 1).
        dow: ((days + 4).rem_euclid(7) + 1) as u8,
        day,
        month,
        year,
    }
}

/// Seconds since the Unix epoch of `f` (its day of week is ignored).
pub fn secs_from_fields(f: &Fields) -> i64 {
    days_from_civil(f.year, f.month, f.day) * 86_400
        + f.hour as i64 * 3600
        + f.min as i64 * 60
        + f.sec as i64
}

/// Encodes 0-99 in the data mode: BCD unless `binary`.
pub fn encode(value: u8, binary: bool) -> u8 {
    if binary {
        value
    } else {
        ((value / 10 % 10) << 4) | (value % 10)
    }
}

/// Decodes a register in the data mode. Invalid BCD digits are taken at face value.
pub fn decode(raw: u8, binary: bool) -> u8 {
    if binary {
        raw
    } else {
        (raw >> 4) * 10 + (raw & 0x0f)
    }
}

/// Hours register bit 7 in 12-hour mode: PM (datasheet "Time, calendar and alarm locations").
pub const HOUR_PM: u8 = 0x80;

/// Encodes an hour (0-23) in the data mode and 12/24-hour format.
pub fn encode_hour(hour: u8, binary: bool, h24: bool) -> u8 {
    if h24 {
        return encode(hour, binary);
    }
    let h12 = match hour % 12 {
        0 => 12,
        h => h,
    };
    encode(h12, binary) | if hour >= 12 { HOUR_PM } else { 0 }
}

/// Decodes an hours register to 0-23 (clamped).
pub fn decode_hour(raw: u8, binary: bool, h24: bool) -> u8 {
    if h24 {
        return decode(raw, binary).min(23);
    }
    let h = decode(raw & !HOUR_PM, binary) % 12;
    (h + if raw & HOUR_PM != 0 { 12 } else { 0 }).min(23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2024-02-29 12:34:56 UTC, a Thursday.
        let f = fields_from_secs(1_709_210_096);
        assert_eq!(
            f,
            Fields {
                sec: 56,
                min: 34,
                hour: 12,
                dow: 5,
                day: 29,
                month: 2,
                year: 2024
            }
        );
        assert_eq!(secs_from_fields(&f), 1_709_210_096);
    }

    #[test]
    fn round_trip_many_days() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(encode(59, false), 0x59);
        assert_eq!(decode(0x59, false), 59);
        assert_eq!(decode(0xff, false), 165);
        assert_eq!(encode_hour(0, false, false), 0x12);
        assert_eq!(encode_hour(12, false, false), 0x92);
        assert_eq!(encode_hour(23, true, false), 0x8b);
        assert_eq!(decode_hour(0x92, false, false), 12);
        assert_eq!(decode_hour(0x12, false, false), 0);
        assert_eq!(decode_hour(0x8b, true, false), 23);
        assert_eq!(decode_hour(0xff, false, true), 23);
    }
}
