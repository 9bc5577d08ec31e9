//! Summaries of repeated measurements: the median and how far the runs spread around it.

/// The values one metric took over the repetitions of a cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Add one repetition's value.
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no repetition succeeded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The median (mean of the middle two for an even count); `None` when empty.
    pub fn median(&self) -> Option<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    /// (max - min) / median, in percent: how noisy the cell was. `None` below two values or
    /// with a zero median.
    pub fn spread_percent(&self) -> Option<f64> {
        if self.0.len() < 2 {
            return None;
        }
        let median = self.median()?;
        if median == 0.0 {
            return None;
        }
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((max - min) / median.abs() * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Samples {
        let mut s = Samples::default();
        values.iter().for_each(|&v| s.push(v));
        s
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(samples(&[3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(samples(&[4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(samples(&[]).median(), None);
    }

    #[test]
    fn spread_is_range_over_median() {
        assert_eq!(samples(&[90.0, 100.0, 110.0]).spread_percent(), Some(20.0));
        assert_eq!(samples(&[100.0]).spread_percent(), None);
        assert_eq!(samples(&[0.0, 0.0, 0.0]).spread_percent(), None);
    }
}
