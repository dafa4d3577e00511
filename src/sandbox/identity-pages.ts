/**
 * The few HTML pages a person sees on the sandbox's identity platform: the sign-in form of the
 * authorize endpoint, the device login page and error pages. Plain forms with no script, so curl,
 * a test or a browser can fill them in the same way.
 */

/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem}button{margin-top:1rem;padding:.4rem 1.2rem}.error{color:#a4262c}.note{color:#555;font-size:.9rem}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
<p class="note">relay365 sandbox: a simulated Microsoft identity platform. Never enter a real password here.</p>
</body>
</html>
`;
}

function errorLine(error: string | undefined): string {
  return error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '';
}

/** The sign-in form of `/oauth2/v2.0/authorize`; the authorize parameters ride along as hidden fields. */
export function signInPage(input: { action: string; appName: string; hidden: Record<string, string>; username?: string; error?: string }): string {
  const hidden = Object.entries(input.hidden)
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('\n');
  return page(
    'Sign in',
    `<p>to continue to <strong>${escapeHtml(input.appName)}</strong></p>
${errorLine(input.error)}
<form method="post" action="${escapeHtml(input.action)}">
${hidden}
<label for="username">Email or user name</label><input type="text" id="username" name="username" autocomplete="username" value="${escapeHtml(input.username ?? '')}">
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password">
<label for="otp">Verification code (when multifactor authentication is required)</label><input type="text" id="otp" name="otp" autocomplete="one-time-code">
<button type="submit">Sign in</button>
</form>`,
  );
}

/** `/devicelogin`: enter the code a device shows, then sign in. */
export function deviceLoginPage(input: { action: string; userCode?: string; username?: string; error?: string }): string {
  return page(
    'Enter code',
    `<p>Enter the code displayed on your app or device, then sign in.</p>
${errorLine(input.error)}
<form method="post" action="${escapeHtml(input.action)}">
<label for="user_code">Code</label><input type="text" id="user_code" name="user_code" autocomplete="off" value="${escapeHtml(input.userCode ?? '')}">
<label for="username">Email or user name</label><input type="text" id="username" name="username" autocomplete="username" value="${escapeHtml(input.username ?? '')}">
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password">
<label for="otp">Verification code (when multifactor authentication is required)</label><input type="text" id="otp" name="otp" autocomplete="one-time-code">
<button type="submit">Next</button>
</form>`,
  );
}

/** Shown once a device code is approved. */
export function deviceLoginDonePage(appName: string, upn: string): string {
  return page(
    'You are signed in',
    `<p>${escapeHtml(upn)} has signed in to the <strong>${escapeHtml(appName)}</strong> application on your device. You may now close this window.</p>`,
  );
}

/** An error the identity platform cannot send back to the app (unknown app, unregistered redirect URI). */
export function errorPage(description: string): string {
  return page('Sorry, but we are having trouble signing you in.', errorLine(description));
}

/**
 * `response_mode=form_post` (OAuth 2.0 Form Post Response Mode): the browser posts the response to the
 * redirect URI by itself. MSAL Node's loopback listener only accepts this mode.
 */
export function formPostPage(action: string, fields: Record<string, string>): string {
  const inputs = Object.entries(fields)
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`)
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>Working...</title></head><body onload="document.forms[0].submit()"><form method="post" action="${escapeHtml(action)}">${inputs}<noscript><button type="submit">Continue</button></noscript></form></body></html>`;
}
