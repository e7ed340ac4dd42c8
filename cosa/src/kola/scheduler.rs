//! Which tests share a VM, and how many VMs run at once.
//!
//! Non-exclusive tests with the same machine needs (first-boot config, kernel
//! arguments, memory, disks) share one VM unless they name each other in
//! `conflicts`; every exclusive test gets its own. VMs start only while a
//! parallelism slot and enough memory in the RAM ledger are free, so parallel
//! VMs never overcommit the machine.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::kola::test::KolaTest;

/// QEMU's own memory beyond the guest's RAM, counted in the ledger.
pub const QEMU_OVERHEAD_MIB: u64 = 256;
/// Memory left to the host and the other users of the machine.
pub const HOST_RESERVE_MIB: u64 = 2048;

/// One VM and the tests it runs, in order.
#[derive(Debug, Clone)]
pub struct VmPlan {
    /// Directory name under the output directory, unique in the run.
    pub vm: String,
    pub tests: Vec<KolaTest>,
    pub memory_mib: u64,
    /// 1 for the first run, 2 for a `--rerun`.
    pub attempt: u32,
}

/// What a VM must look like for a test: tests that agree may share one.
#[derive(Debug, Clone, PartialEq)]
struct MachineNeeds {
    config: Option<serde_json::Value>,
    kargs: Vec<String>,
    firstboot_kargs: Vec<String>,
    memory_mib: u64,
    min_disk_gib: Option<u64>,
    disks: Vec<String>,
}

fn needs(t: &KolaTest, default_memory_mib: u64) -> Result<MachineNeeds> {
    let config = t.ignition_config()?;
    Ok(MachineNeeds {
        config,
        kargs: t.meta.append_kernel_args.clone(),
        firstboot_kargs: t.meta.append_firstboot_kernel_args.clone(),
        memory_mib: t.meta.min_memory_mib.unwrap_or(0).max(default_memory_mib),
        min_disk_gib: t.meta.min_disk_gib,
        disks: t.meta.additional_disks.clone(),
    })
}

fn conflict(a: &KolaTest, b: &KolaTest) -> bool {
    a.meta.conflicts.contains(&b.name) || b.meta.conflicts.contains(&a.name)
}

/// Groups tests into VMs. Batches come first (they run longest).
pub fn plan(tests: Vec<KolaTest>, default_memory_mib: u64, attempt: u32) -> Result<Vec<VmPlan>> {
    let mut batches: Vec<(MachineNeeds, Vec<KolaTest>)> = Vec::new();
    let mut singles: Vec<VmPlan> = Vec::new();
    for t in tests {
        let n = needs(&t, default_memory_mib)?;
        if t.meta.exclusive {
            singles.push(VmPlan {
                vm: vm_name(&t.name, attempt),
                memory_mib: n.memory_mib,
                tests: vec![t],
                attempt,
            });
            continue;
        }
        match batches
            .iter_mut()
            .find(|(bn, bt)| *bn == n && !bt.iter().any(|o| conflict(o, &t)))
        {
            Some((_, bt)) => bt.push(t),
            None => batches.push((n, vec![t])),
        }
    }
    let mut plans: Vec<VmPlan> = batches
        .into_iter()
        .enumerate()
        .map(|(i, (n, tests))| VmPlan {
            vm: if attempt > 1 {
                format!("batch-{}.rerun", i + 1)
            } else {
                format!("batch-{}", i + 1)
            },
            memory_mib: n.memory_mib,
            tests,
            attempt,
        })
        .collect();
    plans.extend(singles);
    Ok(plans)
}

fn vm_name(test: &str, attempt: u32) -> String {
    let base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if attempt > 1 {
        format!("{base}.rerun")
    } else {
        base
    }
}

/// Free memory for VMs: MemAvailable minus a reserve for the host.
pub fn ram_budget_mib() -> Result<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    let kib = m
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no MemAvailable in /proc/meminfo")?;
    Ok((kib / 1024).saturating_sub(HOST_RESERVE_MIB))
}

/// `-j N|auto`: auto is one VM per core, as many as the RAM budget holds.
pub fn parallelism(arg: &str, budget_mib: u64, default_memory_mib: u64) -> Result<usize> {
    if arg == "auto" {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let by_ram = (budget_mib / (default_memory_mib + QEMU_OVERHEAD_MIB)) as usize;
        return Ok(cores.min(by_ram).max(1));
    }
    match arg.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("-j {arg}: expected a positive number or `auto`"),
    }
}

/// Slots and memory: a VM runs while it holds one slot and its memory.
#[derive(Clone)]
pub struct Ledger {
    slots: Arc<Semaphore>,
    /// One permit per MiB.
    ram: Arc<Semaphore>,
    budget_mib: u64,
}

/// What a running VM holds; dropping it gives everything back.
pub struct Lease {
    _slot: OwnedSemaphorePermit,
    _ram: OwnedSemaphorePermit,
}

impl Ledger {
    pub fn new(parallel: usize, budget_mib: u64) -> Ledger {
        Ledger {
            slots: Arc::new(Semaphore::new(parallel)),
            ram: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
        }
    }

    /// Waits for a slot and `memory_mib` (plus QEMU's overhead) of RAM.
    pub async fn acquire(&self, memory_mib: u64) -> Result<Lease> {
        let want = memory_mib + QEMU_OVERHEAD_MIB;
        if want > self.budget_mib {
            bail!(
                "a VM of {memory_mib} MiB (+{QEMU_OVERHEAD_MIB} MiB for QEMU) does not fit in the {} MiB this machine can give VMs",
                self.budget_mib
            );
        }
        let slot = self.slots.clone().acquire_owned().await?;
        let ram = self.ram.clone().acquire_many_owned(want as u32).await?;
        Ok(Lease {
            _slot: slot,
            _ram: ram,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kola::test::{Builtin, TestBody, TestMeta};
    use std::path::PathBuf;

    fn ext(name: &str, exclusive: bool, conflicts: &[&str]) -> KolaTest {
        KolaTest {
            name: name.into(),
            body: TestBody::External {
                exe: PathBuf::from("/t/test.sh"),
                dir: PathBuf::from("/t"),
                root: PathBuf::from("/t"),
                data_dir: None,
                config: None,
            },
            meta: TestMeta {
                exclusive,
                conflicts: conflicts.iter().map(|s| s.to_string()).collect(),
                ..TestMeta::default()
            },
        }
    }

    #[test]
    fn batches_non_exclusive_respecting_conflicts() {
        let tests = vec![
            ext("a", false, &[]),
            ext("b", false, &["a"]),
            ext("c", false, &[]),
            ext("d", true, &[]),
            KolaTest {
                name: "basic".into(),
                body: TestBody::Builtin(Builtin::Basic),
                meta: TestMeta::default(),
            },
        ];
        let p = plan(tests, 1024, 1).unwrap();
        let names: Vec<(String, Vec<String>)> = p
            .iter()
            .map(|p| {
                (
                    p.vm.clone(),
                    p.tests.iter().map(|t| t.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                (
                    "batch-1".to_string(),
                    vec!["a".to_string(), "c".to_string()]
                ),
                ("batch-2".to_string(), vec!["b".to_string()]),
                ("d".to_string(), vec!["d".to_string()]),
                ("basic".to_string(), vec!["basic".to_string()]),
            ]
        );
    }

    #[test]
    fn memory_needs_split_batches() {
        let mut big = ext("big", false, &[]);
        big.meta.min_memory_mib = Some(2048);
        let p = plan(vec![ext("a", false, &[]), big], 1024, 2).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].memory_mib, 2048);
        assert_eq!(p[0].vm, "batch-1.rerun");
    }

    #[test]
    fn parallelism_args() {
        assert_eq!(parallelism("3", 100_000, 1024).unwrap(), 3);
        assert!(parallelism("0", 100_000, 1024).is_err());
        assert!(parallelism("x", 100_000, 1024).is_err());
        // RAM-bound: 2 VMs of 1024+256 fit in 3000 MiB.
        assert!(parallelism("auto", 3000, 1024).unwrap() <= 2);
        assert_eq!(parallelism("auto", 0, 1024).unwrap(), 1);
    }

    #[tokio::test]
    async fn ledger_never_overcommits() {
        let l = Ledger::new(4, 3000);
        let a = l.acquire(1024).await.unwrap();
        let _b = l.acquire(1024).await.unwrap();
        // A third 1280 MiB VM does not fit in 3000 until one is released.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), l.acquire(1024));
        assert!(third.await.is_err());
        drop(a);
        assert!(l.acquire(1024).await.is_ok());
        assert!(l.acquire(4096).await.is_err());
    }
}
