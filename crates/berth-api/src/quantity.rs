//! Kubernetes resource quantities (`500m`, `1.5`, `128Mi`, `2G`, `1e3`): parsing to a number so
//! that validation can reject malformed or negative values and compare requests with limits.

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

/// The value of a quantity in base units (cores, bytes).
pub fn parse_quantity(s: &str) -> Result<f64, QuantityError> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let digits = number.strip_prefix(['+', '-']).unwrap_or(number);
    let well_formed = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && digits != ".";
    if !well_formed {
        return Err(QuantityError);
    }
    let value: f64 = number.parse().map_err(|_| QuantityError)?;
    Ok(value * multiplier(suffix)?)
}

fn multiplier(suffix: &str) -> Result<f64, QuantityError> {
    let binary = |p: i32| Ok(1024f64.powi(p));
    let decimal = |p: i32| Ok(10f64.powi(p));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => exponent(suffix),
    }
}

/// `e3`, `E-2`: a decimal exponent.
fn exponent(suffix: &str) -> Result<f64, QuantityError> {
    let exp = suffix.strip_prefix(['e', 'E']).ok_or(QuantityError)?;
    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(QuantityError);
    }
    let e: i32 = exp.parse().map_err(|_| QuantityError)?;
    Ok(10f64.powi(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_quantity("500m"), Ok(0.5));
        assert_eq!(parse_quantity("2"), Ok(2.0));
        assert_eq!(parse_quantity("1.5"), Ok(1.5));
        assert_eq!(parse_quantity("128Mi"), Ok(128.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Ok(1e9));
        assert_eq!(parse_quantity("1e3"), Ok(1000.0));
        assert_eq!(parse_quantity("-1"), Ok(-1.0));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1..2", "12Mb", "1e", "Mi", ".", "1 Gi", "1.2.3"] {
            assert_eq!(parse_quantity(bad), Err(QuantityError), "{bad:?} accepted");
        }
    }
}
