//! `cosa buildextend-live`, `cosa iso customize`, `cosa pxe customize`.

use anyhow::Result;

use crate::builds::{History, Workdir};
use crate::cli::{CustomizeOpts, GlobalOpts, ImageOpts, LiveMediaAction, LiveMediaOpts};
use crate::live::customize::{self, Customization, CustomizeInputs};

pub fn buildextend(g: &GlobalOpts, o: &ImageOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let id = History::new(wd.builds_dir()).resolve_id(o.build.as_deref())?;
    let started = std::time::Instant::now();
    let results = crate::live::build_live(&wd, Some(&id), o.force)?;
    super::images::print_built(&results, o.json, started)
}

fn customize_opts(o: &LiveMediaOpts) -> &CustomizeOpts {
    match &o.action {
        LiveMediaAction::Customize(c) => c,
    }
}

fn inputs(c: &CustomizeOpts) -> CustomizeInputs {
    CustomizeInputs {
        dest_ignition: c.dest_ignition.clone(),
        dest_device: c.dest_device.clone(),
        dest_console: c.dest_console.clone(),
        dest_karg_append: c.dest_karg_append.clone(),
        dest_karg_delete: c.dest_karg_delete.clone(),
        dest_file: c.dest_file.clone(),
        network_keyfile: c.network_keyfile.clone(),
        ignition_ca: c.ignition_ca.clone(),
        pre_install: c.pre_install.clone(),
        post_install: c.post_install.clone(),
        installer_config: c.installer_config.clone(),
        live_ignition: c.live_ignition.clone(),
        live_karg_append: c.live_karg_append.clone(),
        live_karg_replace: c.live_karg_replace.clone(),
        live_karg_delete: c.live_karg_delete.clone(),
    }
}

pub fn iso(_g: &GlobalOpts, o: &LiveMediaOpts) -> Result<()> {
    let c = customize_opts(o);
    let custom = Customization::from_inputs(&inputs(c))?;
    customize::iso(&c.input, &c.output, c.force, &custom)?;
    println!("Wrote {}", c.output.display());
    Ok(())
}

pub fn pxe(_g: &GlobalOpts, o: &LiveMediaOpts) -> Result<()> {
    let c = customize_opts(o);
    let custom = Customization::from_inputs(&inputs(c))?;
    customize::pxe(&c.input, &c.output, c.force, &custom)?;
    if custom.live_config.is_some() {
        eprintln!("The PXE configuration must give the kernel arguments: ignition.firstboot ignition.platform.id=metal");
    }
    println!(
        "Wrote {} (boot it with the build's kernel and live rootfs)",
        c.output.display()
    );
    Ok(())
}
