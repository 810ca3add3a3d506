//! Which partitions of a topic this consumer owns (`--partitions`, `--instance`), and the
//! identity that keeps the checkpoint and file names of several consumers of one topic apart.

/// Which partitions of each topic this process owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSelection {
    All,
    /// `--partitions 0,2`
    List(Vec<i32>),
    /// `--instance I/N`: partitions `p` with `p % N == I`.
    Instance {
        index: u32,
        count: u32,
    },
}

impl PartitionSelection {
    /// Parses `I/N` for `--instance`.
    pub fn parse_instance(text: &str) -> Result<Self, String> {
        let (i, n) = text.split_once('/').ok_or("expected I/N, like 0/2")?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{i:?} is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("instance {index}/{count}: I must be below N"));
        }
        Ok(Self::Instance { index, count })
    }

    pub(super) fn owns(&self, partition: i32) -> bool {
        match self {
            Self::All => true,
            Self::List(list) => list.contains(&partition),
            Self::Instance { index, count } => partition as u32 % count == *index,
        }
    }

    /// Added to file and checkpoint names so instances sharing an output dir never collide.
    pub fn identity(&self) -> String {
        match self {
            Self::All => "all".into(),
            Self::List(list) => {
                // `--partitions 2,0` and `0,2,0` name the same consumer as `0,2`.
                let mut list = list.clone();
                list.sort_unstable();
                list.dedup();
                let names: Vec<String> = list.iter().map(i32::to_string).collect();
                format!("p{}", names.join("-"))
            }
            Self::Instance { index, count } => format!("i{index}of{count}"),
        }
    }

    pub(super) fn file_suffix(&self) -> String {
        match self {
            Self::All => String::new(),
            _ => format!("-{}", self.identity()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_split_partitions_without_overlap() {
        let a = PartitionSelection::parse_instance("0/2").unwrap();
        let b = PartitionSelection::parse_instance("1/2").unwrap();
        for p in 0..7 {
            assert!(a.owns(p) != b.owns(p));
        }
        assert_eq!(a.identity(), "i0of2");
        assert_eq!(a.file_suffix(), "-i0of2");
        assert_eq!(PartitionSelection::All.file_suffix(), "");
        assert_eq!(PartitionSelection::List(vec![0, 2]).identity(), "p0-2");
        assert_eq!(PartitionSelection::List(vec![2, 0, 2]).identity(), "p0-2");
        assert!(PartitionSelection::parse_instance("2/2").is_err());
        assert!(PartitionSelection::parse_instance("x").is_err());
    }
}
