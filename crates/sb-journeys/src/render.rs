//! One message, rendered per channel. The core (headline, body, image, call to action,
//! products) is written once in Liquid; each channel gets a text derived from it unless its
//! variant overrides it. Liquid is strict: an unknown variable or filter is an error, found
//! at save by rendering against a context of the full shape, never an empty string at send.

use std::sync::OnceLock;

use sb_channels::TemplateSend;
use sb_core::journey::{Invalid, Message, ProductBlock};
use serde_json::{Value, json};

fn parser() -> &'static liquid::Parser {
    static PARSER: OnceLock<liquid::Parser> = OnceLock::new();
    PARSER.get_or_init(|| {
        liquid::ParserBuilder::with_stdlib()
            .build()
            .expect("the standard library builds")
    })
}

/// Renders one Liquid template against `context`.
pub fn liquid(source: &str, context: &Value) -> Result<String, String> {
    let template = parser().parse(source).map_err(|e| one_line(&e.to_string()))?;
    let globals = liquid::model::to_object(context).map_err(|e| one_line(&e.to_string()))?;
    template.render(&globals).map_err(|e| one_line(&e.to_string()))
}

fn one_line(e: &str) -> String {
    e.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A context of the full shape with sample values, to check templates at save: the
/// workspace's traits and the properties the trigger event is known to carry.
pub fn sample_context(traits: &[String], event: &str, properties: &[String]) -> Value {
    let item = json!({"sku": "SKU-1", "name": "Sample product", "quantity": 1, "price": "19.99", "image_url": ""});
    json!({
        "customer": {
            "id": "cus_sample", "name": "Ana Lima", "first_name": "Ana", "last_name": "Lima",
            "email": "ana@example.com", "phone": "+15550000000",
            "traits": traits.iter().map(|t| (t.clone(), Value::String(String::new()))).collect::<serde_json::Map<_, _>>(),
        },
        "cart": {"id": "cart_sample", "total": "19.99", "currency": "EUR", "items": [item.clone()]},
        "last_order": {"number": "1001", "total": "19.99", "currency": "EUR", "items": [item.clone()]},
        "products": [item],
        "event": {
            "name": event,
            "properties": properties.iter().map(|p| (p.clone(), Value::String(String::new()))).collect::<serde_json::Map<_, _>>(),
        },
        "workspace": {"name": "Sample shop", "shop_url": "https://shop.example/shop"},
    })
}

/// What a message becomes on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// WhatsApp outside the window: the approved template with its parameters.
    pub template: Option<TemplateSend>,
    pub subject: Option<String>,
    /// What the channel shows beyond the text (e-mail HTML, an image, quick replies,
    /// Telegram's HTML).
    pub rich: Option<sb_channels::Rich>,
}

use sb_channels::html_escape as esc;

/// The e-mail's HTML part: one responsive column (tables and inline styles, as mail clients
/// need), the shop's name, the image, headline, body, products and the call to action.
fn email_html(core: &Core, subject: &str, shop: &str) -> String {
    let paragraphs: String = core
        .body
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            format!(
                "<p style=\"font-size:16px;line-height:1.5;margin:0 0 12px\">{}</p>",
                esc(p).replace('\n', "<br>")
            )
        })
        .collect();
    let image = core
        .image_url
        .as_ref()
        .map(|u| {
            format!(
                "<tr><td style=\"padding:0\"><img src=\"{}\" alt=\"\" width=\"600\" style=\"display:block;width:100%;max-width:600px;height:auto;border:0\"></td></tr>",
                esc(u)
            )
        })
        .unwrap_or_default();
    let products: String = core
        .products
        .iter()
        .map(|p| {
            format!(
                "<tr><td style=\"padding:6px 24px;font-size:15px;border-top:1px solid #eef0f3\">{}</td></tr>",
                esc(p)
            )
        })
        .collect();
    let cta = core
        .cta
        .as_ref()
        .map(|(label, url)| {
            format!(
                "<tr><td style=\"padding:16px 24px 24px\"><a href=\"{}\" style=\"display:inline-block;background:#3347d6;color:#ffffff;text-decoration:none;font-weight:700;padding:12px 20px;border-radius:8px\">{}</a></td></tr>",
                esc(url),
                esc(label)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title></head>\
<body style=\"margin:0;padding:0;background:#f4f5f7;font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#111827\">\
<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f4f5f7\"><tr><td align=\"center\" style=\"padding:24px 12px\">\
<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"max-width:600px;background:#ffffff;border-radius:12px;overflow:hidden\">\
<tr><td style=\"padding:18px 24px;font-weight:700;font-size:18px;color:#3347d6\">{shop}</td></tr>{image}\
<tr><td style=\"padding:16px 24px 4px\"><h1 style=\"font-size:22px;line-height:1.3;margin:0 0 12px\">{headline}</h1>{paragraphs}</td></tr>{products}{cta}\
</table></td></tr></table></body></html>",
        title = esc(subject),
        shop = esc(shop),
        headline = esc(&core.headline),
    )
}

/// Telegram's HTML parse mode: bold headline, the text escaped, the link as a link.
fn telegram_html(core: &Core) -> String {
    let mut parts = vec![format!("<b>{}</b>", esc(&core.headline)), esc(&core.body)];
    if !core.products.is_empty() {
        parts.push(
            core.products
                .iter()
                .map(|p| format!("• {}", esc(p)))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    if let Some((label, url)) = &core.cta {
        parts.push(format!("<a href=\"{}\">{}</a>", esc(url), esc(label)));
    }
    parts.retain(|p| !p.trim().is_empty());
    parts.join("\n\n")
}

/// Replaces every http(s) URL in `text` with what `short` makes of it (our own redirect),
/// keeping a trailing full stop or comma out of the link.
pub fn shorten_links(text: &str, mut short: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("http://").into_iter().chain(rest.find("https://")).min() {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let mut url = &tail[..end];
        while url.ends_with(['.', ',', ')', '!', '?']) {
            url = &url[..url.len() - 1];
        }
        out.push_str(&short(url));
        rest = &tail[url.len()..];
    }
    out.push_str(rest);
    out
}

/// SMS derived from the core stays within this many segments (each is billed).
pub const SMS_MAX_SEGMENTS: usize = 2;

/// The headline cut to fit, with the link whole.
fn concise_sms(headline: &str, link: &str) -> String {
    let mut head: String = headline.to_owned();
    loop {
        let text = format!("{head}{link}");
        if sb_core::sms::segments(&text).segments <= SMS_MAX_SEGMENTS || head.is_empty() {
            return text;
        }
        head.pop();
    }
}

/// The core's fields rendered for one customer.
struct Core {
    headline: String,
    body: String,
    cta: Option<(String, String)>,
    image_url: Option<String>,
    products: Vec<String>,
}

fn core(message: &Message, context: &Value) -> Result<Core, String> {
    let field = |name: &str, source: &str| liquid(source, context).map_err(|e| format!("{name}: {e}"));
    let optional = |name: &str, source: &Option<String>| -> Result<Option<String>, String> {
        source
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| field(name, s))
            .transpose()
    };
    let cta = match (
        optional("cta_label", &message.cta_label)?,
        optional("cta_url", &message.cta_url)?,
    ) {
        (label, Some(url)) => Some((label.unwrap_or_else(|| "Open".into()), url)),
        _ => None,
    };
    let items = match &message.products {
        ProductBlock::None => Vec::new(),
        ProductBlock::Cart => context["cart"]["items"].as_array().cloned().unwrap_or_default(),
        ProductBlock::Pick { .. } => context["products"].as_array().cloned().unwrap_or_default(),
    };
    let products = items
        .iter()
        .map(|i| {
            let qty = i["quantity"].as_i64().unwrap_or(1);
            let name = i["name"].as_str().unwrap_or_default();
            let price = i["price"].as_str().unwrap_or_default();
            if qty > 1 {
                format!("{name} × {qty} — {price}")
            } else {
                format!("{name} — {price}")
            }
        })
        .collect();
    Ok(Core {
        headline: field("headline", &message.headline)?,
        body: field("body", &message.body)?,
        cta,
        image_url: optional("image_url", &message.image_url)?,
        products,
    })
}

/// The message for `channel`. `template_only`: the channel's window is closed, so only an
/// approved template may go (WhatsApp).
pub fn render(message: &Message, channel: &str, template_only: bool, context: &Value) -> Result<Rendered, String> {
    let core = core(message, context)?;
    let v = &message.variants;
    let over = |variant: &Option<sb_core::journey::TextVariant>| -> Result<Option<String>, String> {
        variant
            .as_ref()
            .map(|t| liquid(&t.text, context).map_err(|e| format!("{channel} text: {e}")))
            .transpose()
    };
    let full = |bold: fn(&str) -> String| {
        let mut parts = vec![bold(&core.headline), core.body.clone()];
        if !core.products.is_empty() {
            parts.push(
                core.products
                    .iter()
                    .map(|p| format!("• {p}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        if let Some((label, url)) = &core.cta {
            parts.push(format!("{label}: {url}"));
        }
        parts.retain(|p| !p.trim().is_empty());
        parts.join("\n\n")
    };
    let mut out = Rendered {
        text: String::new(),
        template: None,
        subject: None,
        rich: None,
    };
    out.text = match channel {
        "sms" => match over(&v.sms)? {
            Some(t) => t,
            None => {
                let link = core.cta.as_ref().map(|(_, url)| format!(" {url}")).unwrap_or_default();
                let full = format!("{}: {}{link}", core.headline, core.body);
                if sb_core::sms::segments(&full).segments <= SMS_MAX_SEGMENTS {
                    full
                } else {
                    // Too long for the segments allowed: the headline and the link, then cut.
                    concise_sms(&core.headline, &link)
                }
            }
        },
        "email" => {
            let e = v.email.clone().unwrap_or_default();
            out.subject = Some(match &e.subject {
                Some(s) => liquid(s, context).map_err(|err| format!("email subject: {err}"))?,
                None => core.headline.clone(),
            });
            match &e.text {
                Some(t) => liquid(t, context).map_err(|err| format!("email text: {err}"))?,
                None => full(|h| h.to_owned()),
            }
        }
        "whatsapp" if template_only => {
            let Some(w) = &v.whatsapp else {
                return Err("the WhatsApp window is closed and the message maps no approved template".into());
            };
            let parameters = w
                .parameters
                .iter()
                .enumerate()
                .map(|(i, p)| liquid(p, context).map_err(|e| format!("whatsapp parameter {}: {e}", i + 1)))
                .collect::<Result<Vec<_>, _>>()?;
            out.template = Some(TemplateSend {
                name: w.template.clone(),
                language: w.language.clone(),
                parameters,
            });
            String::new()
        }
        "whatsapp" => full(|h| format!("*{h}*")),
        "telegram" => match over(&v.telegram)? {
            Some(t) => t,
            None => full(|h| h.to_owned()),
        },
        "messenger" => over(&v.messenger)?.unwrap_or_else(|| full(|h| h.to_owned())),
        "instagram" => over(&v.instagram)?.unwrap_or_else(|| full(|h| h.to_owned())),
        "widget" => over(&v.widget)?.unwrap_or_else(|| full(|h| h.to_owned())),
        _ => full(|h| h.to_owned()),
    };
    let quick_replies = message
        .quick_replies
        .iter()
        .map(|q| liquid(q, context).map_err(|e| format!("quick reply: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    out.rich = match channel {
        "email" if v.email.as_ref().and_then(|e| e.text.as_ref()).is_none() => {
            let subject = out.subject.clone().unwrap_or_default();
            let shop = context["workspace"]["name"].as_str().unwrap_or_default();
            Some(sb_channels::Rich {
                html: Some(email_html(&core, &subject, shop)),
                subject: Some(subject),
                ..Default::default()
            })
        }
        "email" => Some(sb_channels::Rich {
            subject: out.subject.clone(),
            ..Default::default()
        }),
        "telegram" if v.telegram.is_none() => Some(sb_channels::Rich {
            telegram_html: Some(telegram_html(&core)),
            image_url: core.image_url.clone(),
            ..Default::default()
        }),
        "widget" if v.widget.is_none() => Some(sb_channels::Rich {
            card: Some(sb_channels::Card {
                title: core.headline.clone(),
                text: [
                    core.body.clone(),
                    core.products
                        .iter()
                        .map(|p| format!("• {p}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ]
                .into_iter()
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n\n"),
                image_url: core.image_url.clone(),
                button_label: core.cta.as_ref().map(|(label, _)| label.clone()),
                button_url: core.cta.as_ref().map(|(_, url)| url.clone()),
            }),
            ..Default::default()
        }),
        "instagram" | "messenger" => Some(sb_channels::Rich {
            image_url: core.image_url.clone(),
            quick_replies,
            ..Default::default()
        }),
        _ => None,
    };
    Ok(out)
}

/// Checks every template of a message (core and variants, on every channel) against the
/// sample context: the first error, with its place.
pub fn check(message: &Message, context: &Value, step: Option<&str>) -> Result<(), Invalid> {
    let refuse = |message: String| Invalid {
        code: "template_error",
        message,
        step: step.map(str::to_owned),
    };
    for channel in sb_core::journey::CHANNELS {
        render(message, channel, false, context).map_err(refuse)?;
    }
    if message.variants.whatsapp.is_some() {
        render(message, "whatsapp", true, context).map_err(refuse)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        serde_json::from_value(json!({
            "headline": "{{ customer.first_name }}, your cart is waiting",
            "body": "You left {{ cart.items.size }} item(s).",
            "cta_label": "Back to your cart",
            "cta_url": "https://shop.example/cart/{{ cart.id }}",
            "products": {"type": "cart"},
            "variants": {"whatsapp": {"template": "cart_reminder", "language": "en_US",
                                      "parameters": ["{{ customer.first_name }}", "{{ cart.items.first.name }}"]}}
        }))
        .expect("message")
    }

    #[test]
    fn one_message_renders_per_channel() {
        let ctx = sample_context(&[], "Product Added", &[]);
        let sms = render(&message(), "sms", false, &ctx).expect("sms");
        assert_eq!(
            sms.text,
            "Ana, your cart is waiting: You left 1 item(s). https://shop.example/cart/cart_sample"
        );
        let email = render(&message(), "email", false, &ctx).expect("email");
        assert_eq!(email.subject.as_deref(), Some("Ana, your cart is waiting"));
        assert!(email.text.contains("• Sample product — 19.99"), "{}", email.text);
        let wa = render(&message(), "whatsapp", true, &ctx).expect("template");
        let t = wa.template.expect("template");
        assert_eq!(
            (t.name.as_str(), t.parameters),
            ("cart_reminder", vec!["Ana".to_owned(), "Sample product".into()])
        );
        let inside = render(&message(), "whatsapp", false, &ctx).expect("free text");
        assert!(inside.text.starts_with("*Ana, your cart is waiting*"));
    }

    #[test]
    fn an_unknown_variable_or_filter_is_refused_at_save() {
        let ctx = sample_context(&[], "Product Added", &[]);
        let mut m = message();
        m.body = "Hi {{ customer.nickname }}".into();
        let e = check(&m, &ctx, Some("remind")).unwrap_err();
        assert_eq!(e.code, "template_error");
        assert!(
            e.message.contains("nickname") || e.message.contains("Unknown"),
            "{}",
            e.message
        );
        let mut m = message();
        m.headline = "{{ customer.first_name | shout }}".into();
        assert_eq!(check(&m, &ctx, None).unwrap_err().code, "template_error");
        check(&message(), &ctx, None).expect("the sample renders");
    }

    #[test]
    fn each_channel_gets_what_it_can_show() {
        let ctx = sample_context(&[], "Product Added", &[]);
        let mut m = message();
        m.headline = "Tom & Jerry <3 sale".into();
        m.image_url = Some("https://shop.example/img/sale.jpg".into());
        m.quick_replies = vec!["Show me".into(), "Not now".into()];
        let email = render(&m, "email", false, &ctx).expect("email");
        let rich = email.rich.expect("rich");
        let html = rich.html.expect("html");
        assert!(html.contains("Tom &amp; Jerry &lt;3 sale"), "escaped: {html}");
        assert!(
            html.contains("max-width:600px") && html.contains(">Back to your cart</a>"),
            "{html}"
        );
        assert!(html.contains("https://shop.example/img/sale.jpg") && html.contains("Sample product"));
        assert_eq!(rich.subject.as_deref(), Some("Tom & Jerry <3 sale"));
        let tg = render(&m, "telegram", false, &ctx)
            .expect("telegram")
            .rich
            .expect("rich");
        let tg_html = tg.telegram_html.expect("html");
        assert!(tg_html.starts_with("<b>Tom &amp; Jerry &lt;3 sale</b>"), "{tg_html}");
        assert!(
            tg_html.contains("<a href=\"https://shop.example/cart/cart_sample\">Back to your cart</a>"),
            "{tg_html}"
        );
        let ig = render(&m, "instagram", false, &ctx)
            .expect("instagram")
            .rich
            .expect("rich");
        assert_eq!(ig.image_url.as_deref(), Some("https://shop.example/img/sale.jpg"));
        assert_eq!(ig.quick_replies, vec!["Show me".to_owned(), "Not now".to_owned()]);
    }

    #[test]
    fn sms_stays_within_the_segments_allowed() {
        let ctx = sample_context(&[], "Product Added", &[]);
        let mut m = message();
        m.body = "A very long story about our spring collection, ".repeat(10);
        let sms = render(&m, "sms", false, &ctx).expect("sms").text;
        assert!(sb_core::sms::segments(&sms).segments <= SMS_MAX_SEGMENTS, "{sms}");
        assert!(
            sms.ends_with("https://shop.example/cart/cart_sample"),
            "the link stays whole: {sms}"
        );
        m.headline = "Ñandú ☀️ ".repeat(40);
        let sms = render(&m, "sms", false, &ctx).expect("sms").text;
        assert!(sb_core::sms::segments(&sms).segments <= SMS_MAX_SEGMENTS, "{sms}");
    }

    #[test]
    fn links_in_a_text_are_replaced_whole() {
        let mut n = 0;
        let out = shorten_links("Sale: https://shop.example/sale?c=1. Or http://x.example/a, bye", |u| {
            n += 1;
            format!("<{n}:{u}>")
        });
        assert_eq!(
            out,
            "Sale: <1:https://shop.example/sale?c=1>. Or <2:http://x.example/a>, bye"
        );
        assert_eq!(shorten_links("no links", |_| unreachable!()), "no links");
    }

    #[test]
    fn rendering_is_deterministic() {
        let ctx = sample_context(&["tier".into()], "Product Added", &[]);
        let a = render(&message(), "email", false, &ctx);
        let b = render(&message(), "email", false, &ctx);
        assert_eq!(a, b);
    }
}
