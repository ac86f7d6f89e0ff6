//! The preferred channel, defined once for every automated send:
//! 1. the channel the customer said they prefer (the `preferred_channel` trait);
//! 2. else the channel they last wrote on, while it can still take the message;
//! 3. else the first channel of a ranked fallback list (the step's, or the workspace's) where
//!    the customer has an address and the purpose is allowed (marketing needs consent).
//!
//! A step may pin one channel instead. Each answer says why, and what was passed over.

use sb_core::inbox::Purpose;
use sb_core::journey::{SendStep, channel_family};
use sb_inbox::Channels;
use sb_store::channel_accounts::{self, ChannelAccount};
use sb_store::{Conn, StoreError, conversations, profiles};

/// The workspace's fallback order.
pub const DEFAULT_ORDER: [&str; 7] = [
    "whatsapp",
    "sms",
    "email",
    "telegram",
    "messenger",
    "instagram",
    "widget",
];

#[derive(Debug, Clone)]
pub struct Choice {
    pub account: ChannelAccount,
    /// The reply window is closed: only an approved template may go.
    pub template_only: bool,
    pub why: String,
}

#[derive(Debug, Clone)]
pub struct NoChannel {
    /// A consent refusal (`consent_revoked`, `consent_missing`, `address_suppressed`, …) when
    /// that is what stopped the best candidate, else `no_channel`.
    pub code: String,
    pub why: String,
}

/// The customer's stated preference, if any.
pub fn preference(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Option<String>, StoreError> {
    Ok(profiles::traits(c, ws, customer_id)?
        .into_iter()
        .find(|t| t.name == "preferred_channel")
        .and_then(|t| serde_json::from_str::<String>(&t.value_json).ok())
        .map(|s| s.trim().to_lowercase()))
}

pub fn choose(
    c: &mut dyn Conn,
    channels: &Channels,
    ws: &str,
    customer_id: &str,
    send: &SendStep,
    now: i64,
) -> Result<Result<Choice, NoChannel>, StoreError> {
    let accounts: Vec<ChannelAccount> = channel_accounts::list(c, ws)?
        .into_iter()
        .filter(|a| !a.disabled)
        .collect();
    let mut candidates: Vec<(&ChannelAccount, String)> = Vec::new();
    let push = |account: &'_ ChannelAccount, label: String, list: &mut Vec<(usize, String)>| {
        if let Some(i) = accounts.iter().position(|a| a.id == account.id)
            && !list.iter().any(|(j, _)| *j == i)
        {
            list.push((i, label));
        }
    };
    let mut order: Vec<(usize, String)> = Vec::new();
    if let Some(pinned) = &send.channel {
        for a in accounts.iter().filter(|a| channel_family(&a.channel) == pinned) {
            push(a, "the step sends on this channel".into(), &mut order);
        }
    } else {
        if let Some(preferred) = preference(c, ws, customer_id)? {
            for a in accounts.iter().filter(|a| channel_family(&a.channel) == preferred) {
                push(a, "the customer's stated preference".into(), &mut order);
            }
        }
        let last = match conversations::id_for_customer(c, ws, customer_id)? {
            Some(id) => conversations::get(c, ws, &id)?.and_then(|conv| conv.last_inbound_account_id),
            None => None,
        };
        if let Some(last) = last
            && let Some(a) = accounts.iter().find(|a| a.id == last)
        {
            push(a, "the channel the customer last wrote on".into(), &mut order);
        }
        let fallback: Vec<&str> = if send.fallback.is_empty() {
            DEFAULT_ORDER.to_vec()
        } else {
            send.fallback.iter().map(String::as_str).collect()
        };
        for ch in fallback {
            for a in accounts.iter().filter(|a| channel_family(&a.channel) == ch) {
                push(
                    a,
                    "the first channel of the fallback order that can take it".into(),
                    &mut order,
                );
            }
        }
    }
    for (i, label) in order {
        candidates.push((&accounts[i], label));
    }
    let has_template = send.message.variants.whatsapp.is_some();
    let mut passed: Vec<String> = Vec::new();
    let mut refusal: Option<String> = None;
    for (account, label) in candidates {
        let option = sb_inbox::outbox::reach(c, channels, ws, customer_id, account, now)?;
        if matches!(option.reason, Some("no_address" | "channel_unavailable")) {
            passed.push(format!(
                "{} ({})",
                account.channel,
                option.reason_text.unwrap_or_default()
            ));
            continue;
        }
        if let Err(r) = sb_store::consents::may_send(
            c,
            ws,
            customer_id,
            &account.channel,
            option.address.as_deref(),
            send.purpose,
        )? {
            refusal.get_or_insert_with(|| r.code.to_owned());
            passed.push(format!("{} ({})", account.channel, r.reason));
            continue;
        }
        let template_only = option.reason == Some("reply_window_closed");
        if template_only && !(account.channel == "whatsapp" && has_template) {
            passed.push(format!(
                "{} ({}, and the message has no template for it)",
                account.channel,
                option.reason_text.unwrap_or_default()
            ));
            continue;
        }
        let mut why = format!("{} ({}): {label}", account.channel, account.name);
        if template_only {
            why.push_str("; outside the 24-hour window, so as the approved template");
        }
        if !passed.is_empty() {
            why.push_str(&format!("; passed over: {}", passed.join(", ")));
        }
        return Ok(Ok(Choice {
            account: account.clone(),
            template_only,
            why,
        }));
    }
    let why = if passed.is_empty() {
        "no channel account of this workspace can reach the customer".to_owned()
    } else {
        format!("no channel can take it: {}", passed.join(", "))
    };
    let code = match send.purpose {
        Purpose::Marketing | Purpose::Transactional => refusal.unwrap_or_else(|| "no_channel".into()),
        Purpose::Conversation => "no_channel".into(),
    };
    Ok(Err(NoChannel { code, why }))
}
